// Reclaim, the planner: the pure half of NVMe region reclaim. Given a snapshot (the regions'
// run states, what the index says of their chunks), it decides which region goes next and,
// for that region, which chunks are dropped, which keep living in DRAM only, and which are
// rewritten elsewhere and in what order. No I/O, no locks, no clock: the executor
// (reclaim_executor.cc, StoreImpl's reclaim thread) takes the snapshot under the Store's
// mutex, does the I/O, and applies the plan; tests/store/reclaim_planner_test.cc checks the
// decisions without devices.
//
// The policy, in short:
// - A run (a region and the regions a long record covers) is priced by what reclaiming it
//   would lose: nothing, memory-durability chunks, or disk-acknowledged chunks. Regions are
//   tried cheapest first, then FIFO (oldest sealed) or LRU (least recently read).
// - A run still waiting for its seal that would lose less than the best candidate is waited
//   for rather than reclaiming dearer chunks.
// - Inside a region, a live chunk is "wanted" when it was read since written or has stored
//   children outside the region; so is every ancestor of a wanted chunk in the region (a
//   descendant is unreachable without them), unless the chain's top is an orphan. Wanted
//   chunks in DRAM lose only their NVMe copy and are written back later; wanted chunks only
//   on NVMe are rewritten, ancestors first, until the first that does not fit the budget.
//   Everything else is dropped, the last written first.
//
// Threading: plain functions and values; no shared state.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "nvme_engine.h"
#include "tw/store/options.h"

namespace tw::store::reclaim {

// What reclaiming a run would lose, by the run's head region (one byte per region).
enum Price : uint8_t {
  kLosesNothing = 0,  // its chunks are gone, or also in DRAM
  kLosesMemory = 1,   // memory-durability chunks that live only on NVMe
  kLosesDisk = 2,     // disk-acknowledged chunks
  kUnpriced = 3,      // the run was not full when priced: its price is not known
};
using Prices = std::vector<uint8_t>;

// A chunk's `children` count saturates here: "at least this many".
inline constexpr uint8_t kChildrenSticky = 255;

// Prices every run in one pass over the index: construct with the regions' run states, then
// AddChunk() for every chunk that lives only on NVMe (not in DRAM, not being removed).
class Pricer {
 public:
  explicit Pricer(std::span<const NvmeEngine::RegionView> regions);
  // `region` is the region of the chunk's record (NvmeEngine::RegionOf); unknown regions are
  // ignored.
  void AddChunk(uint32_t region, bool disk);
  Prices Take() { return std::move(cost_); }

 private:
  std::span<const NvmeEngine::RegionView> regions_;
  Prices cost_;
};

// When reclaim runs, in free regions: it starts once fewer than `start_below` are free (or a
// put asks for space) and stops at `stop_at`. In a small tier the watermarks round to no
// region, so it starts only once none is free and stops at two.
struct FreeRegionBounds {
  uint32_t start_below = 1;
  uint32_t stop_at = 2;
};
FreeRegionBounds Bounds(uint32_t region_count, double high_watermark, double low_watermark);

using SealedRegion = NvmeEngine::SealedRegion;
// The order in which reclaim tries the sealed regions: cheapest first; among equals by
// `order` (FIFO: oldest sealed first; LRU: least recently read first), then by region number.
std::vector<uint32_t> OrderCandidates(std::vector<SealedRegion> sealed, ReclaimOrder order,
                                      const Prices& cost);

// Whether `cost` may be used to reclaim a candidate that costs `best`.
struct PriceCheck {
  enum Kind : uint8_t {
    kHold = 0,       // go ahead
    kReprice = 1,    // `best` was not priced (sealed since): make new prices
    kAwaitSeal = 2,  // the run at `head` waits for its seal and would lose less: wait for it
                     // (then make new prices), unless the wait times out (then go ahead)
  };
  Kind kind = kHold;
  uint32_t head = 0;  // for kAwaitSeal
};
PriceCheck CheckPrices(std::span<const NvmeEngine::RegionView> regions, const Prices& cost,
                       uint8_t best);

// One live chunk of the region being reclaimed, in the order of the region's summary (the
// order its records were written).
struct LiveChunk {
  uint64_t tag = 0;
  uint64_t parent = 0;        // its parent chunk's tag; 0 for a chain's first chunk
  uint8_t children = 0;       // stored chunks naming it as parent (kChildrenSticky: at least)
  bool hit = false;           // read since it was written
  bool in_dram = false;       // also in DRAM
  bool orphan = false;        // has a parent chunk, and that chunk is not stored
  uint64_t record_bytes = 0;  // its record's length on NVMe
};

// What to do with each live chunk of a region (indices into the LiveChunk span). Every chunk
// is in exactly one list.
struct RegionPlan {
  std::vector<size_t> write_back;  // wanted, in DRAM: lose the NVMe copy, queue for write-back
  std::vector<size_t> dram_only;   // not wanted, in DRAM: lose the NVMe copy
  std::vector<size_t> rewrite;     // wanted, only on NVMe, within budget: ancestors first
  std::vector<size_t> drop;        // the rest, only on NVMe: in the order to remove them
};
// `rewrite_budget`: record bytes that may be rewritten (a quarter of a region; 0 while the
// store closes or when the region's summary could not be read).
RegionPlan PlanRegion(std::span<const LiveChunk> live, uint64_t rewrite_budget);

}  // namespace tw::store::reclaim
