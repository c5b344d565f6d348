#include "frame_fuzz_target.h"

#include <string_view>

#include "tw/protocol/frame.h"
#include "tw/protocol/messages.h"

namespace tw::protocol::fuzz {

int FuzzOne(const uint8_t* data, size_t size) {
  int frames = 0;
  MessageLimits limits;
  limits.arena_size = 1 << 20;
  limits.max_batch = 64;
  for (bool client_side : {false, true}) {
    DecodeLimits dl;
    dl.max_body = 1 << 16;
    dl.expect_response = client_side;
    std::span<const uint8_t> rest(data, size);
    while (!rest.empty()) {
      DecodedFrame d = DecodeFrame(rest, dl);
      if (d.state != DecodeState::kFrame) break;
      ++frames;
      if (d.consumed == 0 || d.consumed > rest.size()) __builtin_trap();  // decoder bug
      if (!client_side) {
        auto parsed = ParseRequest(d.header.opcode, d.body, limits);
        (void)parsed.ok();
      } else {
        pb::ErrorReply e;
        (void)ParseBody(d.body, &e).ok();
      }
      rest = rest.subspan(d.consumed);
    }
  }
  return frames;
}

}  // namespace tw::protocol::fuzz
