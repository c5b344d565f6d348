// The message layer of the twd client protocol: parsing frame bodies into the protobuf
// messages of proto/tokenwarehouse/v1 and checking everything about a request that does not
// need the store — key lengths, batch sizes, token counts, scatter lists inside the arena
// and not overlapping, put ranges that cover each segment exactly once. What passes here is
// structurally sound; the service still checks tenancy, leases and key derivation.
//
// Threading: pure functions, thread-safe. Lifetime: parsed messages are owned by the caller.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenwarehouse/v1/admin.pb.h"
#include "tokenwarehouse/v1/client.pb.h"
#include "tw/common/keys.h"
#include "tw/common/status.h"
#include "tw/protocol/frame.h"

namespace tw::protocol {

namespace pb = ::tokenwarehouse::v1;

// Structural limits a request is checked against (from the server's configuration and the
// connection's arena).
struct MessageLimits {
  uint32_t max_batch = 4096;                      // items per request
  uint64_t max_value_size = uint64_t{256} << 20;  // bytes of one chunk value
  uint64_t arena_size = 0;                        // bytes of this connection's arena
  uint32_t max_tokens = 1u << 20;                 // token ids of one chunk
  uint32_t max_extra = 1u << 16;                  // extra bytes of one chunk
  uint32_t max_segments = 1u << 16;               // segments of one value
  uint32_t max_chain = 1u << 16;                  // keys in one lookup chain
  uint32_t max_ranges = 1u << 18;                 // scatter entries in one request
  uint32_t max_namespaces = 1024;                 // namespaces declared per connection
};

// Parses a protobuf body. Errors are kInvalidArgument naming the message type.
Status ParseBody(std::string_view body, google::protobuf::MessageLite* message);

// Parses a request body for `op` and checks it against `limits`. The returned message has
// the type the opcode names (HelloRequest for kHello, ...). Used by twd and by the fuzzer.
StatusOr<std::unique_ptr<google::protobuf::MessageLite>> ParseRequest(Opcode op,
                                                                      std::string_view body,
                                                                      const MessageLimits& limits);

// The checks ParseRequest applies, one per request type.
Status ValidateHello(const pb::HelloRequest& m, const MessageLimits& limits);
Status ValidateDeclare(const pb::DeclareNamespacesRequest& m, const MessageLimits& limits);
Status ValidateLookup(const pb::LookupRequest& m, const MessageLimits& limits);
Status ValidateReleaseLeases(const pb::ReleaseLeasesRequest& m, const MessageLimits& limits);
Status ValidateGet(const pb::GetRequest& m, const MessageLimits& limits);
Status ValidatePut(const pb::PutRequest& m, const MessageLimits& limits);
Status ValidateKeyRefs(const google::protobuf::RepeatedPtrField<pb::KeyRef>& refs,
                       const MessageLimits& limits);
Status ValidateExport(const pb::ExportRequest& m);
Status ValidateEvict(const pb::EvictNamespaceRequest& m);

// `m` serialized after kHeaderSize bytes of room for its frame header: one allocation, and the
// body is written once, in place (EncodeFrame copies a serialized body into the frame). The
// header is filled in later with SetFrameHeader (a client knows the request id only then).
std::string FrameMessage(const google::protobuf::MessageLite& m);
// Writes `h` (body_length from the frame's size) into the first kHeaderSize bytes of `frame`.
// REQUIRES: frame->size() >= kHeaderSize.
void SetFrameHeader(FrameHeader h, std::string* frame);

// A complete reply frame: header (kFlagResponse, `extra_flags`) + serialized message.
std::string EncodeReply(Opcode op, uint64_t request_id, const google::protobuf::MessageLite& m,
                        uint32_t extra_flags = 0);
// A complete request frame.
std::string EncodeRequest(Opcode op, uint64_t request_id, const google::protobuf::MessageLite& m);
// A complete error reply frame (kFlagResponse | kFlagError) carrying an ErrorReply.
std::string EncodeError(Opcode op, uint64_t request_id, const Status& status, bool fatal);
// The Status an ErrorReply carries.
Status ErrorReplyToStatus(const pb::ErrorReply& reply);

// Conversions between the wire and the domain.
pb::Namespace ToProto(const Namespace& ns);
Namespace FromProto(const pb::Namespace& ns);
// REQUIRES: the bytes were checked to be 32 long (Validate* does).
Key KeyFromBytes(const std::string& raw);

// A lookup chain's length, whichever form its keys came in (`keys`, `packed_keys` or
// `keys_count` in the arena). REQUIRES: the chain passed ValidateLookup.
size_t ChainLength(const pb::KeyChain& chain);
// Keys that lie in a client's arena may change under the reader: read them in place only
// when nothing but that client's own answer depends on them.
enum class ArenaKeys : uint8_t { kInPlace = 0, kCopy = 1 };
// A chain's keys in any form, copied only where they must be: packed keys are a view of the
// message's bytes (valid while `chain` lives unmodified), arena keys a view of `arena` or
// (kCopy) a copy in `scratch`, and the one-field-per-key form a copy in `scratch`.
// REQUIRES: the chain passed ValidateLookup against `arena`'s size.
std::span<const Key> ChainKeysView(const pb::KeyChain& chain, std::span<const uint8_t> arena,
                                   ArenaKeys arena_keys, std::vector<Key>* scratch);
// Sets `chain`'s keys in the packed form (version 2) or one field per key.
void SetChainKeys(std::span<const Key> keys, bool packed, pb::KeyChain* chain);

}  // namespace tw::protocol
