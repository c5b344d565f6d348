#include "tw/protocol/frame.h"

#include <algorithm>
#include <cstring>

#include "tw/common/strings.h"

namespace tw::protocol {
namespace {

uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t LoadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t LoadU64(const uint8_t* p) {
  return static_cast<uint64_t>(LoadU32(p)) | (static_cast<uint64_t>(LoadU32(p + 4)) << 32);
}
void StoreU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void StoreU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void StoreU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

DecodedFrame Fail(const FrameHeader& h, Status s) {
  DecodedFrame d;
  d.state = DecodeState::kError;
  d.header = h;
  d.error = std::move(s);
  return d;
}

}  // namespace

std::string_view ToString(Opcode op) {
  switch (op) {
    case Opcode::kInvalid:
      return "invalid";
    case Opcode::kHello:
      return "hello";
    case Opcode::kDeclareNamespaces:
      return "declare_namespaces";
    case Opcode::kLookup:
      return "lookup";
    case Opcode::kReleaseLeases:
      return "release_leases";
    case Opcode::kGet:
      return "get";
    case Opcode::kPut:
      return "put";
    case Opcode::kExists:
      return "exists";
    case Opcode::kDelete:
      return "delete";
    case Opcode::kStats:
      return "stats";
    case Opcode::kPing:
      return "ping";
    case Opcode::kAdminNamespaces:
      return "admin_namespaces";
    case Opcode::kAdminEvictNamespace:
      return "admin_evict_namespace";
    case Opcode::kAdminExport:
      return "admin_export";
    case Opcode::kAdminStats:
      return "admin_stats";
    case Opcode::kAdminPeers:
      return "admin_peers";
  }
  return "unknown";
}

bool IsKnownOpcode(uint16_t op) {
  return (op >= static_cast<uint16_t>(Opcode::kHello) &&
          op <= static_cast<uint16_t>(Opcode::kPing)) ||
         (op >= static_cast<uint16_t>(Opcode::kAdminNamespaces) &&
          op <= static_cast<uint16_t>(Opcode::kAdminPeers));
}

bool IsAdminOpcode(Opcode op) {
  return static_cast<uint16_t>(op) >= static_cast<uint16_t>(Opcode::kAdminNamespaces);
}

std::string FlagsToString(uint32_t flags) {
  std::string out;
  auto add = [&](std::string_view name) {
    if (!out.empty()) out += '|';
    out += name;
  };
  if (flags & kFlagResponse) add("response");
  if (flags & kFlagError) add("error");
  if (flags & kFlagMore) add("more");
  if (flags & ~kKnownFlags) add(fmt::format("0x{:x}", flags & ~kKnownFlags));
  return out;
}

std::string_view ToString(DecodeState s) {
  switch (s) {
    case DecodeState::kNeedMore:
      return "need_more";
    case DecodeState::kFrame:
      return "frame";
    case DecodeState::kError:
      return "error";
  }
  return "unknown";
}

void EncodeHeader(const FrameHeader& h, uint8_t out[kHeaderSize]) {
  StoreU32(out, h.magic);
  StoreU16(out + 4, h.version);
  StoreU16(out + 6, static_cast<uint16_t>(h.opcode));
  StoreU32(out + 8, h.flags);
  StoreU64(out + 12, h.request_id);
  StoreU32(out + 20, h.body_length);
}

std::string EncodeFrame(FrameHeader header, std::string_view body) {
  header.body_length = static_cast<uint32_t>(body.size());
  std::string out(kHeaderSize + body.size(), '\0');
  EncodeHeader(header, reinterpret_cast<uint8_t*>(out.data()));
  if (!body.empty()) std::memcpy(out.data() + kHeaderSize, body.data(), body.size());
  return out;
}

DecodedFrame DecodeFrame(std::span<const uint8_t> bytes, const DecodeLimits& limits) {
  FrameHeader h;
  const uint8_t* p = bytes.data();
  const size_t n = bytes.size();
  // Check each field as soon as its bytes are in, so a bad prefix fails early.
  if (n >= 4) {
    h.magic = LoadU32(p);
    if (h.magic != kMagic) {
      return Fail(h,
                  InvalidArgumentError(StrCat("bad frame magic 0x", fmt::format("{:08x}", h.magic),
                                              " (want 0x", fmt::format("{:08x}", kMagic), ")")));
    }
  } else {
    if (n == 0) return {};
    // Compare the prefix we have against the magic's bytes.
    uint8_t want[4];
    StoreU32(want, kMagic);
    if (std::memcmp(p, want, n) != 0) {
      return Fail(h, InvalidArgumentError("bad frame magic"));
    }
    return {};
  }
  if (n < 6) return {};
  h.version = LoadU16(p + 4);
  if (h.version != kFrameVersion) {
    return Fail(h, UnimplementedError(StrCat("unsupported frame version ", h.version,
                                             " (this side speaks ", kFrameVersion, ")")));
  }
  if (n < kHeaderSize) return {};
  h.opcode = static_cast<Opcode>(LoadU16(p + 6));
  h.flags = LoadU32(p + 8);
  h.request_id = LoadU64(p + 12);
  h.body_length = LoadU32(p + 20);
  if ((h.flags & ~kKnownFlags) != 0) {
    return Fail(h, InvalidArgumentError(StrCat("unknown frame flags 0x",
                                               fmt::format("{:x}", h.flags & ~kKnownFlags))));
  }
  const bool is_response = (h.flags & kFlagResponse) != 0;
  if (is_response != limits.expect_response) {
    return Fail(h, InvalidArgumentError(is_response ? "unexpected response frame"
                                                    : "request frame where a response was due"));
  }
  if (!is_response && (h.flags & (kFlagError | kFlagMore)) != 0) {
    return Fail(h, InvalidArgumentError("error/more flags on a request frame"));
  }
  const uint16_t raw_op = static_cast<uint16_t>(h.opcode);
  // A reply to an undecodable frame carries opcode 0 with the error flag.
  const bool error_reply_to_unknown = is_response && (h.flags & kFlagError) && raw_op == 0;
  if (!IsKnownOpcode(raw_op) && !error_reply_to_unknown) {
    return Fail(h, UnimplementedError(StrCat("unknown opcode ", raw_op)));
  }
  const uint32_t max_body = std::min(limits.max_body, kAbsoluteMaxBody);
  if (h.body_length > max_body) {
    return Fail(h, ResourceExhaustedError(StrCat("frame body of ", h.body_length,
                                                 " bytes exceeds the limit of ", max_body)));
  }
  if (n - kHeaderSize < h.body_length) return {};
  DecodedFrame d;
  d.state = DecodeState::kFrame;
  d.header = h;
  d.consumed = kHeaderSize + h.body_length;
  d.body = std::string_view(reinterpret_cast<const char*>(p + kHeaderSize), h.body_length);
  return d;
}

}  // namespace tw::protocol
