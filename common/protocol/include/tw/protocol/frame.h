// The frame layer of the twd client protocol (docs/protocol.md): a fixed 24-byte header
// followed by a protobuf body. Pure code: bytes in, (result, consumed) out; no sockets, no
// allocation on the decode path, so it can be fed partial and hostile input and fuzzed.
//
// Header layout, all fields little-endian:
//   offset 0  u32 magic        kMagic ("TWCP" in bytes)
//   offset 4  u16 version      kFrameVersion
//   offset 6  u16 opcode       Opcode
//   offset 8  u32 flags        FrameFlags bits
//   offset 12 u64 request_id   chosen by the client, echoed in every reply frame
//   offset 20 u32 body_length  bytes of body that follow
//
// Threading: every function is pure and thread-safe. Lifetime: a decoded body is a view into
// the caller's buffer and lives as long as it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tw/common/status.h"

namespace tw::protocol {

inline constexpr uint32_t kMagic = 0x50435754;  // bytes "TWCP"
inline constexpr uint16_t kFrameVersion = 1;    // version of this header layout
inline constexpr size_t kHeaderSize = 24;
// Protocol versions this build speaks (negotiated in HELLO). Version 2 adds
// KeyChain.packed_keys (a lookup chain's keys in one field), version 3 lookup chains whose
// keys lie in the client's arena.
inline constexpr uint32_t kMinProtocolVersion = 1;
inline constexpr uint32_t kMaxProtocolVersion = 3;
// First version whose twd accepts KeyChain.packed_keys.
inline constexpr uint32_t kPackedKeysVersion = 2;
// First version whose twd accepts KeyChain.keys_arena_offset/keys_count.
inline constexpr uint32_t kArenaKeysVersion = 3;
// Hard ceiling of a body, whatever the configuration says.
inline constexpr uint32_t kAbsoluteMaxBody = 64u << 20;

// What a frame carries. Replies reuse the request's opcode with FrameFlags::kResponse.
enum class Opcode : uint16_t {
  kInvalid = 0,               // never valid on the wire
  kHello = 1,                 // HelloRequest / HelloResponse; first frame, carries the memfd
  kDeclareNamespaces = 2,     // DeclareNamespacesRequest / Response
  kLookup = 3,                // LookupRequest / LookupResponse
  kReleaseLeases = 4,         // ReleaseLeasesRequest / Response
  kGet = 5,                   // GetRequest / GetResponse
  kPut = 6,                   // PutRequest / PutResponse
  kExists = 7,                // ExistsRequest / ExistsResponse
  kDelete = 8,                // DeleteRequest / DeleteResponse
  kStats = 9,                 // StatsRequest / StatsResponse
  kPing = 10,                 // PingRequest / PingResponse
  kAdminNamespaces = 64,      // admin socket: NamespacesRequest / Response
  kAdminEvictNamespace = 65,  // admin socket: EvictNamespaceRequest / Response
  kAdminExport = 66,          // admin socket: ExportRequest / stream of ExportResponse
  kAdminStats = 67,           // admin socket: AdminStatsRequest / AdminStatsResponse
  kAdminPeers = 68,           // admin socket: AdminPeersRequest / AdminPeersResponse
};
std::string_view ToString(Opcode op);
// True for the opcodes listed above (excluding kInvalid).
bool IsKnownOpcode(uint16_t op);
// True for the admin opcodes (served on the admin socket only).
bool IsAdminOpcode(Opcode op);

// Bits of the header's flags field.
enum FrameFlags : uint32_t {
  kFlagResponse = 1u << 0,  // sent by twd: a reply to the request with the same id
  kFlagError = 1u << 1,     // the body is an ErrorReply instead of the *Response
  kFlagMore = 1u << 2,      // a streamed reply continues in further frames (admin export)
};
inline constexpr uint32_t kKnownFlags = kFlagResponse | kFlagError | kFlagMore;
// "response|error", "" for none; unknown bits as "0x..".
std::string FlagsToString(uint32_t flags);

struct FrameHeader {
  uint32_t magic = kMagic;
  uint16_t version = kFrameVersion;
  Opcode opcode = Opcode::kInvalid;
  uint32_t flags = 0;
  uint64_t request_id = 0;
  uint32_t body_length = 0;
};

// Writes the 24 header bytes.
void EncodeHeader(const FrameHeader& header, uint8_t out[kHeaderSize]);
// Header + body as one buffer (header.body_length is set from body).
std::string EncodeFrame(FrameHeader header, std::string_view body);

// Outcome of one decode attempt.
enum class DecodeState {
  kNeedMore,  // the buffer holds a prefix of a valid frame: read more bytes
  kFrame,     // one whole frame was decoded
  kError,     // the bytes can never become a valid frame: answer and close
};
std::string_view ToString(DecodeState s);

struct DecodeLimits {
  uint32_t max_body = 16u << 20;  // larger bodies are errors (capped at kAbsoluteMaxBody)
  // Frames a server accepts have no response flag; a client's decoder sets this to true.
  bool expect_response = false;
};

struct DecodedFrame {
  DecodeState state = DecodeState::kNeedMore;
  size_t consumed = 0;    // bytes of the input that made up the frame (0 unless kFrame)
  FrameHeader header;     // valid for kFrame (and for kError once 24 bytes were seen)
  std::string_view body;  // view into the input (kFrame)
  Status error;           // kError: why (invalid argument / unimplemented for the version)
};

// Decodes at most one frame from the front of `bytes`. Checks, in order: magic, version,
// flags, opcode, body length. A header error is reported as soon as the header bytes that
// show it have arrived, so a hostile client cannot park a connection on a bad prefix.
DecodedFrame DecodeFrame(std::span<const uint8_t> bytes, const DecodeLimits& limits);
inline DecodedFrame DecodeFrame(std::string_view bytes, const DecodeLimits& limits) {
  return DecodeFrame(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
      limits);
}

}  // namespace tw::protocol
