// The reclaim planner's decisions, without devices, threads or sleeps. Each case mirrors a
// behaviour that reclaim_test.cc, store_index_test.cc or delete_test.cc checks end to end.
#include "reclaim_planner.h"

#include <gtest/gtest.h>

#include <vector>

namespace tw::store::reclaim {
namespace {

using RegionView = NvmeEngine::RegionView;
using RunState = NvmeEngine::RunState;

LiveChunk Chunk(uint64_t tag, uint64_t parent = 0, uint64_t bytes = 4096) {
  LiveChunk c;
  c.tag = tag;
  c.parent = parent;
  c.record_bytes = bytes;
  return c;
}

TEST(ReclaimPlannerTest, PricesARunByWhatItWouldLose) {
  // Regions 0-1 one run (head 0), 2 and 3 sealed runs of their own, 4 not full yet.
  std::vector<RegionView> regions = {{0, RunState::kSealed},
                                     {0, RunState::kSealed},
                                     {2, RunState::kSealed},
                                     {3, RunState::kSealed},
                                     {4, RunState::kNotFull}};
  Pricer p(regions);
  p.AddChunk(1, /*disk=*/true);   // a disk chunk in the run's second region prices its head
  p.AddChunk(2, /*disk=*/false);  // memory-durability only
  p.AddChunk(4, /*disk=*/true);   // a run not full when priced stays unpriced
  p.AddChunk(99, /*disk=*/true);  // an unknown region is ignored
  const Prices cost = p.Take();
  ASSERT_EQ(cost.size(), 5u);
  EXPECT_EQ(cost[0], kLosesDisk);
  EXPECT_EQ(cost[2], kLosesMemory);
  EXPECT_EQ(cost[3], kLosesNothing);  // no chunk only on NVMe
  EXPECT_EQ(cost[4], kUnpriced);
}

TEST(ReclaimPlannerTest, DiskChunksAreReclaimedLast) {
  // reclaim_test DiskChunksAreReclaimedLast: the oldest regions hold disk chunks; reclaim
  // takes the younger memory-durability regions first, and FIFO order among equals.
  const Prices cost = {kLosesDisk, kLosesDisk, kLosesMemory, kLosesMemory, kLosesNothing};
  std::vector<SealedRegion> sealed;
  for (uint32_t r = 0; r < 5; ++r) sealed.push_back({r, /*seal_seq=*/10 + r, 0});
  EXPECT_EQ(OrderCandidates(sealed, ReclaimOrder::kFifo, cost),
            (std::vector<uint32_t>{4, 2, 3, 0, 1}));
}

TEST(ReclaimPlannerTest, LruTakesTheRegionReadLeastRecentlyFifoTheOldest) {
  // reclaim_test LruReclaimsTheRegionReadLeastRecently: run A (regions 0, 1) sealed first and
  // read since, run B (regions 2, 3) sealed later and never read.
  const Prices cost(4, kLosesDisk);
  const std::vector<SealedRegion> sealed = {
      {0, 1, /*last_access=*/50}, {1, 2, 51}, {2, 3, 0}, {3, 4, 0}};
  EXPECT_EQ(OrderCandidates(sealed, ReclaimOrder::kLru, cost)[0], 2u);
  EXPECT_EQ(OrderCandidates(sealed, ReclaimOrder::kFifo, cost)[0], 0u);
}

TEST(ReclaimPlannerTest, WaitsForACheaperRunStillBeingSealed) {
  // reclaim_test DiskChunksAreReclaimedLastWhenCommitsLag: the only sealed region holds disk
  // chunks while a run of memory-durability chunks waits for its commits.
  std::vector<RegionView> regions = {{0, RunState::kSealed}, {1, RunState::kSealing}};
  Prices cost = {kLosesDisk, kLosesMemory};
  PriceCheck c = CheckPrices(regions, cost, kLosesDisk);
  EXPECT_EQ(c.kind, PriceCheck::kAwaitSeal);
  EXPECT_EQ(c.head, 1u);
  // Unpriced (not full when priced) counts as cheapest: it is waited for too.
  cost[1] = kUnpriced;
  EXPECT_EQ(CheckPrices(regions, cost, kLosesMemory).kind, PriceCheck::kAwaitSeal);
  // Nothing cheaper is being sealed: go ahead.
  cost[1] = kLosesDisk;
  EXPECT_EQ(CheckPrices(regions, cost, kLosesDisk).kind, PriceCheck::kHold);
  // The best candidate itself was not priced: price again.
  EXPECT_EQ(CheckPrices(regions, cost, kUnpriced).kind, PriceCheck::kReprice);
}

TEST(ReclaimPlannerTest, StartsOnRealPressureOnly) {
  // reclaim_test HalfRegionChunksFillAboutHalfARegionEach: in a tier of 8 regions the
  // watermarks round to no region: start when none is free, stop at two.
  FreeRegionBounds small = Bounds(8, 0.95, 0.90);
  EXPECT_EQ(small.start_below, 1u);
  EXPECT_EQ(small.stop_at, 2u);
  // A large tier: start below a quarter free, stop at half.
  FreeRegionBounds big = Bounds(1024, 0.75, 0.5);
  EXPECT_EQ(big.start_below, 256u);
  EXPECT_EQ(big.stop_at, 512u);
}

TEST(ReclaimPlannerTest, UnreadLeavesAreDroppedLastWrittenFirst) {
  const std::vector<LiveChunk> live = {Chunk(1), Chunk(2), Chunk(3)};
  const RegionPlan p = PlanRegion(live, 1 << 20);
  EXPECT_TRUE(p.rewrite.empty());
  EXPECT_TRUE(p.write_back.empty());
  EXPECT_TRUE(p.dram_only.empty());
  EXPECT_EQ(p.drop, (std::vector<size_t>{2, 1, 0}));
}

TEST(ReclaimPlannerTest, AReadChunkKeepsItsAncestorsAndTheyAreRewrittenFirst) {
  // store_index_test NvmeReclaimKeepsSharedPrefixes: a chain 1 → 2 → 3 written deepest first
  // in one region; the leaf was read. All three are rewritten, the top first.
  std::vector<LiveChunk> live = {Chunk(3, 2), Chunk(2, 1), Chunk(1, 0), Chunk(9)};
  live[1].children = 1;
  live[2].children = 1;
  live[0].hit = true;
  const RegionPlan p = PlanRegion(live, 1 << 20);
  EXPECT_EQ(p.rewrite, (std::vector<size_t>{2, 1, 0}));
  EXPECT_EQ(p.drop, (std::vector<size_t>{3}));
}

TEST(ReclaimPlannerTest, ChildrenOutsideTheRegionMakeAChunkWanted) {
  std::vector<LiveChunk> live = {Chunk(1), Chunk(2), Chunk(3)};
  live[0].children = 2;                // two stored children, none in this region
  live[1].children = kChildrenSticky;  // at least 255: always wanted
  const RegionPlan p = PlanRegion(live, 1 << 20);
  EXPECT_EQ(p.rewrite, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(p.drop, (std::vector<size_t>{2}));
}

TEST(ReclaimPlannerTest, ChildrenInsideTheRegionDoNotCount) {
  // 1's only child is 2, in the region and unread: neither is wanted.
  std::vector<LiveChunk> live = {Chunk(1), Chunk(2, 1)};
  live[0].children = 1;
  const RegionPlan p = PlanRegion(live, 1 << 20);
  EXPECT_TRUE(p.rewrite.empty());
  EXPECT_EQ(p.drop, (std::vector<size_t>{1, 0}));
}

TEST(ReclaimPlannerTest, AnOrphanedChainIsNotKept) {
  // The chain's top lost its parent: no lookup reaches it, read or not.
  std::vector<LiveChunk> live = {Chunk(2, 1), Chunk(3, 2)};
  live[0].orphan = true;
  live[0].children = 1;
  live[1].hit = true;
  const RegionPlan p = PlanRegion(live, 1 << 20);
  EXPECT_TRUE(p.rewrite.empty());
  EXPECT_EQ(p.drop, (std::vector<size_t>{1, 0}));
}

TEST(ReclaimPlannerTest, RewritesStopAtTheFirstThatDoesNotFit) {
  // reclaim_test ReadARunThenOverflow: a read chunk of half a region exceeds the budget of a
  // quarter region. Ancestors first: once one does not fit, no deeper one is rewritten either
  // (it would be unreachable), even if it would fit.
  std::vector<LiveChunk> live = {Chunk(1, 0, 4096), Chunk(2, 1, 1 << 20), Chunk(3, 2, 4096)};
  live[0].children = 1;
  live[1].children = 1;
  live[2].hit = true;
  const RegionPlan p = PlanRegion(live, 64 * 1024);
  EXPECT_EQ(p.rewrite, (std::vector<size_t>{0}));
  EXPECT_EQ(p.drop, (std::vector<size_t>{2, 1}));
}

TEST(ReclaimPlannerTest, NoBudgetNoRewrites) {
  // While the store closes (or the summary is unreadable) the budget is 0: wanted chunks only
  // on NVMe are dropped.
  std::vector<LiveChunk> live = {Chunk(1)};
  live[0].hit = true;
  const RegionPlan p = PlanRegion(live, 0);
  EXPECT_TRUE(p.rewrite.empty());
  EXPECT_EQ(p.drop, (std::vector<size_t>{0}));
}

TEST(ReclaimPlannerTest, ChunksInDramLoseOnlyTheirNvmeCopy) {
  // A wanted chunk also in DRAM is written back later; an unwanted one stays in DRAM only.
  // Neither is dropped nor rewritten.
  std::vector<LiveChunk> live = {Chunk(1), Chunk(2), Chunk(3)};
  live[0].in_dram = true;
  live[0].hit = true;
  live[1].in_dram = true;
  const RegionPlan p = PlanRegion(live, 1 << 20);
  EXPECT_EQ(p.write_back, (std::vector<size_t>{0}));
  EXPECT_EQ(p.dram_only, (std::vector<size_t>{1}));
  EXPECT_TRUE(p.rewrite.empty());
  EXPECT_EQ(p.drop, (std::vector<size_t>{2}));
}

TEST(ReclaimPlannerTest, AWantedChildInDramKeepsItsNvmeOnlyParent) {
  // The child in DRAM was read; its parent lives only on NVMe in the same region: the parent
  // is rewritten, or the child would be unreachable.
  std::vector<LiveChunk> live = {Chunk(1), Chunk(2, 1)};
  live[0].children = 1;
  live[1].in_dram = true;
  live[1].hit = true;
  const RegionPlan p = PlanRegion(live, 1 << 20);
  EXPECT_EQ(p.rewrite, (std::vector<size_t>{0}));
  EXPECT_EQ(p.write_back, (std::vector<size_t>{1}));
  EXPECT_TRUE(p.drop.empty());
}

}  // namespace
}  // namespace tw::store::reclaim
