// DramTier: the DRAM tier's memory and its eviction order.
//
//   * one arena of the configured capacity, mapped once (2 MiB aligned, optionally hugepages,
//     optionally mlock'ed so it can be registered for DMA), pre-faulted;
//   * an extent allocator over it (4 KiB units, best fit, coalescing): no per-chunk malloc;
//   * an eviction policy over object ids chosen by the caller: S3-FIFO (a small probationary
//     FIFO, a main FIFO with reinsertion of objects hit since they entered, and entry into
//     main for objects recently evicted) or LRU.
//
// Threading: not thread-safe; the Store calls it under its own mutex. The arena's bytes may be
// read and written outside that mutex by whoever holds a pin on the object (the Store's rule).
// Lifetime: the arena lives as long as the DramTier.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <unordered_set>
#include <vector>

#include "tw/common/status.h"
#include "tw/store/options.h"

namespace tw::store {

class DramTier {
 public:
  struct Options {
    uint64_t capacity = 0;
    bool hugepages = false;
    bool pinned = false;
    DramEviction eviction = DramEviction::kS3Fifo;
  };
  static StatusOr<std::unique_ptr<DramTier>> Create(const Options& o);
  ~DramTier();

  uint8_t* base() const { return base_; }
  uint64_t capacity() const { return capacity_; }
  uint64_t used() const { return used_; }
  bool pinned() const { return pinned_; }

  // An extent of `len` bytes (rounded up to 4 KiB); nullopt when no free extent is that large.
  std::optional<uint64_t> Allocate(uint64_t len);
  void Free(uint64_t offset, uint64_t len);
  // Largest free extent (for tests and stats).
  uint64_t largest_free() const;

  // Eviction order. `bytes` is the object's size; `was_ghost` says it was evicted recently.
  void Insert(uint32_t id, uint64_t bytes, bool was_ghost);
  void Touch(uint32_t id);
  // Touch() of each of `ids`, last first (a lookup's chain, deepest chunk first, so that the
  // ancestors end up the most recently used). One call and one policy check for the chain.
  void TouchLastFirst(std::span<const uint32_t> ids);
  void Remove(uint32_t id);
  // Picks and removes from the policy the next object to evict for which `evictable` is
  // true; objects it skips keep their place (rotated). nullopt when none qualifies.
  std::optional<uint32_t> PickVictim(const std::function<bool(uint32_t)>& evictable);

 private:
  DramTier() = default;
  struct Obj {
    uint64_t bytes = 0;
    uint32_t gen = 0;
    uint8_t freq = 0;
    uint8_t queue = 0;  // 0 none, 1 small, 2 main
    std::list<uint32_t>::iterator lru;
  };
  Obj& obj(uint32_t id);

  uint8_t* base_ = nullptr;
  uint64_t map_len_ = 0;
  uint64_t capacity_ = 0;
  uint64_t used_ = 0;
  bool pinned_ = false;
  DramEviction eviction_ = DramEviction::kS3Fifo;

  std::map<uint64_t, uint64_t> free_by_off_;       // offset → length
  std::multimap<uint64_t, uint64_t> free_by_len_;  // length → offset

  std::vector<Obj> objs_;
  std::deque<std::pair<uint32_t, uint32_t>> small_, main_;  // (id, gen)
  uint64_t small_bytes_ = 0;
  std::list<uint32_t> lru_;  // front = most recent
};

}  // namespace tw::store
