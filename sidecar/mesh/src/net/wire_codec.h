// The mesh's raw wire: Locate and Fetch on a persistent TCP connection per (requester thread,
// peer), framed by hand instead of carried in gRPC calls (docs/mesh.md "The raw wire"). This
// file is the pure part: frame headers and message bodies encoded into and parsed from bytes,
// no sockets (the parser is tested with cut and hostile input in wire_codec_test.cc).
//
// A frame is an 8-byte header (type, version, two zero bytes, body length as little-endian
// uint32) and its body:
//   kLocate        → 32 bytes per directory key (at most kMaxLocateKeys keys)
//   kLocateAnswer  ← varint count of holder names, each a varint length and its bytes, then
//                    per key a varint count and that many varint indices into the names
//                    (the packed answer of peer.proto's LocateResponse)
//   kFetch         → namespace digest (32), chunk key (32), the requester's time budget in
//                    nanoseconds (uint64 LE), the requester's node name (the rest)
//   kFetchHeader   ← a serialized FetchHeader (peer.proto); on a hit, exactly value_size raw
//                    bytes of value follow the frame, unframed
//   kError         ← a status code (uint32 LE) and a message: the request was refused
// Requests (→) and answers (←) alternate on a connection: one request at a time.
//
// Threading: free functions, no shared state.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tw/common/keys.h"
#include "tw/common/status.h"

namespace tw::mesh::net {

enum class WireType : uint8_t {
  kLocate = 1,        // a batch of directory keys asked of their home
  kLocateAnswer = 2,  // the home's holders per key
  kFetch = 3,         // one chunk's value asked of a holder
  kFetchHeader = 4,   // the holder's answer: a miss, or the value's layout (bytes follow)
  kError = 5,         // the request was refused (bad request)
};

inline constexpr uint8_t kWireVersion = 1;
inline constexpr size_t kWireHeaderSize = 8;
inline constexpr size_t kMaxLocateKeys = size_t{1} << 16;
// Largest frame body accepted (a Locate of kMaxLocateKeys keys, or its answer).
inline constexpr uint32_t kMaxWireBody = 4u << 20;

struct WireHeader {
  WireType type = WireType::kError;
  uint32_t body = 0;  // bytes of body that follow the header
};

// The 8 header bytes of a frame.
std::array<uint8_t, kWireHeaderSize> EncodeWireHeader(WireType type, uint32_t body);
// INVALID_ARGUMENT for an unknown version or type, or a body over kMaxWireBody.
StatusOr<WireHeader> DecodeWireHeader(std::span<const uint8_t, kWireHeaderSize> bytes);

// kLocate: the keys, 32 bytes each, back to back.
std::string EncodeLocate(std::span<const Key> dir_keys);
StatusOr<std::vector<Key>> DecodeLocate(std::string_view body);

// kLocateAnswer: `names` and, per key, indices into them (offsets: keys + 1 entries, as
// Directory::Packed).
std::string EncodeLocateAnswer(std::span<const std::string> names,
                               std::span<const uint32_t> offsets,
                               std::span<const uint32_t> holders);
// The answer for `keys` keys asked, in the same packed form. An answer for another number of
// keys, an index past the names or trailing bytes are errors.
struct LocateAnswer {
  std::vector<std::string> names;
  std::vector<uint32_t> offsets{0};  // keys + 1 entries
  std::vector<uint32_t> index;       // into names
};
StatusOr<LocateAnswer> DecodeLocateAnswer(std::string_view body, size_t keys);
// The packed holder part alone (after the names; also peer.proto's packed_holders), appended
// to `offsets` and `index`; `names` is the count of names the indices may refer to.
Status DecodePackedHolders(std::string_view in, size_t keys, size_t names,
                           std::vector<uint32_t>* offsets, std::vector<uint32_t>* index);

struct WireFetchRequest {
  Key namespace_digest;
  Key key;
  uint64_t budget_ns = 0;  // the requester's time left when it sent the request
  std::string from_node;
};
std::string EncodeFetch(const WireFetchRequest& f);
StatusOr<WireFetchRequest> DecodeFetch(std::string_view body);

// kError: a status (not OK) as a frame body, and back.
std::string EncodeError(const Status& status);
Status DecodeError(std::string_view body);

}  // namespace tw::mesh::net
