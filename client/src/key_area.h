// tw::client::KeyArea — the reserved tail of a client's arena where lookups place their key
// chains (protocol version 3, docs/protocol.md "LOOKUP"): twd reads the keys where they lie,
// so a long chain does not cross the socket (no serialising, no kernel copies, no parsing).
// The area is cut into fixed slots, one per lookup in flight; a lookup that finds no free
// slot, or whose keys do not fit one, sends its keys in the message instead.
//
// Threading: thread-safe. Lifetime: a Slot keeps the area's bookkeeping alive; it goes back
// to the free list when its last copy is destroyed — for a lookup, once twd has answered
// (twd never reads a request's arena bytes after answering it) or the connection ended.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace tw::client {

class KeyArea {
 public:
  static constexpr uint64_t kSlotBytes = uint64_t{128} << 10;  // 4096 keys

  // The area: `bytes` of memory at `base`, which twd sees at `arena_offset` of the arena.
  KeyArea(uint8_t* base, uint64_t arena_offset, uint64_t bytes);

  struct Slot {
    uint8_t* data;          // where the caller writes
    uint64_t arena_offset;  // where twd reads
  };
  // A free slot of at least `bytes`; null when none is free or `bytes` > kSlotBytes.
  std::shared_ptr<const Slot> Take(uint64_t bytes);
  size_t slots() const { return slots_; }

 private:
  struct FreeList {
    std::mutex mu;
    std::vector<uint32_t> free;
  };
  uint8_t* base_;
  uint64_t arena_offset_;
  size_t slots_;
  std::shared_ptr<FreeList> list_;
};

}  // namespace tw::client
