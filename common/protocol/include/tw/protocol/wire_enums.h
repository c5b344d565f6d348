// The one mapping between the result vocabulary of tw/common/cache_types.h (Tier, MissReason,
// PutResult, Durability) and the enums of the wire (proto/tokenwarehouse/v1/client.proto).
// twd's socket codec and libtwclient both convert through here, so the two sides can never
// disagree about a value. The numbering differs (the wire's PutResult and Durability reserve
// 0 for "unspecified"/"default"), so nothing may convert by cast.
//
// A value the wire does not define (a newer peer, a hostile one) reads as the most cautious
// domain value: Tier kNone, MissReason kIoError, PutResult kInvalid, Durability kDefault.
//
// Threading: pure functions, thread-safe.
#pragma once

#include "tokenwarehouse/v1/client.pb.h"
#include "tw/common/cache_types.h"

namespace tw::protocol {

namespace pb = ::tokenwarehouse::v1;

pb::Tier ToProto(Tier t);
Tier FromProto(pb::Tier t);

pb::MissReason ToProto(MissReason r);
MissReason FromProto(pb::MissReason r);

pb::PutResult ToProto(PutResult r);
PutResult FromProto(pb::PutResult r);

pb::Durability ToProto(Durability d);
Durability FromProto(pb::Durability d);

}  // namespace tw::protocol
