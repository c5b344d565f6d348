// The one enum mapping between the domain (tw/common/cache_types.h) and the wire
// (client.proto): every domain value survives a round trip, every wire value the proto
// defines maps to a distinct domain value and back, and values the wire does not define read
// as the cautious default.
#include "tw/protocol/wire_enums.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace tw::protocol {
namespace {

template <typename Domain, typename Wire>
void ExpectBijection(Domain last_domain, Wire wire_min, Wire wire_max, bool (*wire_valid)(int),
                     std::set<int> wire_only) {
  std::set<int> wires;
  std::set<std::string> names;
  for (int v = 0; v <= static_cast<int>(last_domain); ++v) {
    const auto d = static_cast<Domain>(v);
    const Wire w = ToProto(d);
    EXPECT_TRUE(wire_valid(w)) << ToString(d);
    EXPECT_EQ(FromProto(w), d) << ToString(d);
    wires.insert(static_cast<int>(w));
    names.insert(std::string(ToString(d)));
  }
  // Distinct domain values go to distinct wire values and have distinct names.
  EXPECT_EQ(wires.size(), static_cast<size_t>(last_domain) + 1);
  EXPECT_EQ(names.size(), static_cast<size_t>(last_domain) + 1);
  // Every wire value the proto defines is the image of a domain value (except the ones
  // listed as wire-only, such as "unspecified").
  for (int w = wire_min; w <= wire_max; ++w) {
    if (!wire_valid(w) || wire_only.contains(w)) continue;
    EXPECT_TRUE(wires.contains(w)) << "wire value " << w << " has no domain value";
    EXPECT_EQ(static_cast<int>(ToProto(FromProto(static_cast<Wire>(w)))), w);
  }
}

TEST(WireEnumsTest, TierRoundTrips) {
  ExpectBijection<Tier, pb::Tier>(Tier::kPeer, pb::Tier_MIN, pb::Tier_MAX, &pb::Tier_IsValid, {});
  EXPECT_EQ(FromProto(static_cast<pb::Tier>(99)), Tier::kNone);
}

TEST(WireEnumsTest, MissReasonRoundTrips) {
  ExpectBijection<MissReason, pb::MissReason>(MissReason::kPeerUnreachable, pb::MissReason_MIN,
                                              pb::MissReason_MAX, &pb::MissReason_IsValid, {});
  EXPECT_EQ(FromProto(static_cast<pb::MissReason>(99)), MissReason::kIoError);
}

TEST(WireEnumsTest, PutResultRoundTripsAndIsNotACast) {
  ExpectBijection<PutResult, pb::PutResult>(PutResult::kInvalid, pb::PutResult_MIN,
                                            pb::PutResult_MAX, &pb::PutResult_IsValid,
                                            {pb::PUT_RESULT_UNSPECIFIED});
  static_assert(kPutResultCount == static_cast<size_t>(PutResult::kInvalid) + 1);
  // The numbering differs from the wire's: 0 is "stored" here, "unspecified" there.
  EXPECT_EQ(ToProto(PutResult::kStored), pb::PUT_RESULT_STORED);
  EXPECT_NE(static_cast<int>(ToProto(PutResult::kStored)), static_cast<int>(PutResult::kStored));
  EXPECT_EQ(FromProto(pb::PUT_RESULT_UNSPECIFIED), PutResult::kInvalid);
  EXPECT_EQ(FromProto(static_cast<pb::PutResult>(99)), PutResult::kInvalid);
}

TEST(WireEnumsTest, DurabilityRoundTrips) {
  ExpectBijection<Durability, pb::Durability>(Durability::kDefault, pb::Durability_MIN,
                                              pb::Durability_MAX, &pb::Durability_IsValid, {});
  EXPECT_EQ(FromProto(static_cast<pb::Durability>(99)), Durability::kDefault);
}

}  // namespace
}  // namespace tw::protocol
