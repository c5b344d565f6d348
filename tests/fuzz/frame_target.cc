#include <string_view>
#include <vector>

#include "fuzz_targets.h"
#include "tokenwarehouse/v1/client.pb.h"
#include "tw/protocol/frame.h"
#include "tw/protocol/messages.h"

namespace tw::fuzz {

using namespace tw::protocol;

int FuzzFrame(const uint8_t* data, size_t size) {
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
        // A lookup that validated reads its keys in any form without leaving the message or
        // the arena (ASan checks every byte read).
        if (parsed.ok() && d.header.opcode == Opcode::kLookup) {
          static std::vector<uint8_t> arena(limits.arena_size);
          std::vector<Key> scratch;
          uint64_t sum = 0;
          for (const auto& item : static_cast<const pb::LookupRequest&>(**parsed).items()) {
            for (const auto& chain : item.chains()) {
              for (ArenaKeys mode : {ArenaKeys::kInPlace, ArenaKeys::kCopy}) {
                for (const Key& k : ChainKeysView(chain, arena, mode, &scratch)) sum += k.bytes[31];
              }
            }
          }
          if (sum == ~uint64_t{0}) __builtin_trap();  // keeps the reads
        }
      } else {
        pb::ErrorReply e;
        (void)ParseBody(d.body, &e).ok();
      }
      rest = rest.subspan(d.consumed);
    }
  }
  return frames;
}

}  // namespace tw::fuzz
