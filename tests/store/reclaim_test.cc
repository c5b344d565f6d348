// Space amplification and reclaim: records of half a region must not waste half of every
// region, reclaim starts on real pressure only, and it drops `disk`-acknowledged chunks last.
#include <gtest/gtest.h>

#include <chrono>

#include "store_test_util.h"
#include "tw/store/device.h"
#include "tw/store/store.h"

namespace tw::store {
namespace {

using namespace testing;  // store_test_util.h
constexpr uint64_t kRegion = 8 * MiB;
constexpr uint64_t kHalf = kRegion / 2;  // a value of half a region: its record is 4 KiB more

// A tier of exactly `regions` regions of kRegion (the metadata of such a small tier takes the
// first 3 MiB of the path).
Options Tier(std::shared_ptr<DeviceFactory> f, uint32_t regions, uint64_t dram = 0) {
  Options o = testing::TestOptions(std::move(f), dram, 3 * MiB + regions * kRegion, kRegion,
                                   "/dev/reclaim0");
  o.nvme.stripe_unit = 1 * MiB;
  return o;
}

std::unique_ptr<Store> MustOpen(const Options& o, uint32_t regions) {
  auto s = testing::MustOpen(o);
  if (s) {
    EXPECT_EQ(s->Stats().nvme.capacity_bytes, regions * kRegion);
  }
  return s;
}

// Every chunk of `chunks` reads back byte-exact.
void ExpectAll(Store& s, const std::vector<TestChunk>& chunks, const char* when) {
  for (size_t i = 0; i < chunks.size(); ++i) {
    bool eq;
    GetResult r = ReadAll(s, chunks[i], &eq);
    EXPECT_TRUE(eq) << when << ": chunk " << i << ": " << ToString(r.miss);
  }
}

// Lets the background threads act on whatever they would act on: returns once write-back is
// done and a whole reclaim pass found nothing to do.
void Settle(Store& s) { EXPECT_TRUE(AwaitBackgroundIdle(s)) << "background threads still busy"; }

TEST(ReclaimTest, HalfRegionChunksFillAboutHalfARegionEach) {
  // 12 records of half a region (+ header) need 7 regions when runs grow over their
  // neighbours; in a tier of 8, nothing may be reclaimed.
  auto mem = std::make_shared<MemDeviceFactory>();
  const Options o = Tier(mem, 8);
  std::vector<TestChunk> chunks;
  for (int i = 0; i < 12; ++i) chunks.push_back(MakeChunk(i, {kHalf}));
  {
    auto s = MustOpen(o, 8);
    ASSERT_TRUE(s);
    for (auto& c : chunks) ASSERT_EQ(s->Put(c.Request(Durability::kDisk)), PutResult::kStored);
    Settle(*s);
    EXPECT_EQ(s->Stats().nvme.evictions, 0u);
    ExpectAll(*s, chunks, "before restart");
    ASSERT_TRUE(s->Close(std::chrono::seconds(5)).ok());
  }
  auto s = MustOpen(o, 8);
  ASSERT_TRUE(s);
  Settle(*s);
  EXPECT_EQ(s->Stats().nvme.evictions, 0u);
  EXPECT_EQ(s->Stats().nvme.chunks, chunks.size());
  ExpectAll(*s, chunks, "after restart");
}

TEST(ReclaimTest, HalfRegionChunksWithARestartInBetween) {
  // A restart seals the open run with its unused tail: 6 + 6 records take 8 regions of 9.
  auto mem = std::make_shared<MemDeviceFactory>();
  const Options o = Tier(mem, 9);
  std::vector<TestChunk> chunks;
  for (int i = 0; i < 12; ++i) chunks.push_back(MakeChunk(i, {kHalf}));
  for (int half = 0; half < 2; ++half) {
    auto s = MustOpen(o, 9);
    ASSERT_TRUE(s);
    for (int i = half * 6; i < half * 6 + 6; ++i) {
      ASSERT_EQ(s->Put(chunks[i].Request(Durability::kDisk)), PutResult::kStored) << i;
    }
    Settle(*s);
    EXPECT_EQ(s->Stats().nvme.evictions, 0u) << "after part " << half;
    ASSERT_TRUE(s->Close(std::chrono::seconds(5)).ok());
  }
  auto s = MustOpen(o, 9);
  ASSERT_TRUE(s);
  Settle(*s);
  EXPECT_EQ(s->Stats().nvme.evictions, 0u);
  ExpectAll(*s, chunks, "after restarts");
}

TEST(ReclaimTest, ServiceBenchmarkMixLosesNothingBelowSixtyPercent) {
  // The service benchmark's mix, scaled to 8 MiB regions: `disk` and `memory` chunks of half
  // a region (the memory ones written back by the background thread or at close)
  // interleaved with 4 KiB chunks, a clean restart after each of three rounds. Live bytes end
  // at about 60 % of a 10-region tier: nothing may be reclaimed, no disk chunk lost.
  auto mem = std::make_shared<MemDeviceFactory>();
  const Options o = Tier(mem, 10, 64 * MiB);
  std::vector<TestChunk> disk, memory, small;
  uint64_t live = 0;
  for (int round = 0; round < 3; ++round) {
    auto s = MustOpen(o, 10);
    ASSERT_TRUE(s);
    ExpectAll(*s, disk, "after restart");
    for (int i = 0; i < 2; ++i) {
      disk.push_back(MakeChunk(100 + round * 10 + i, {kHalf}));
      memory.push_back(MakeChunk(200 + round * 10 + i, {kHalf}));
      ASSERT_EQ(s->Put(disk.back().Request(Durability::kDisk)), PutResult::kStored);
      ASSERT_EQ(s->Put(memory.back().Request(Durability::kMemory)), PutResult::kStored);
      for (int j = 0; j < 16; ++j) {
        small.push_back(MakeChunk(1000 + small.size(), {4 * KiB}));
        ASSERT_EQ(s->Put(small.back().Request(Durability::kMemory)), PutResult::kStored);
      }
      live += 2 * (kHalf + 4 * KiB) + 16 * 8 * KiB;
    }
    Settle(*s);
    EXPECT_EQ(s->Stats().nvme.evictions, 0u) << "round " << round;
    ASSERT_TRUE(s->Close(std::chrono::seconds(10)).ok());
  }
  EXPECT_LT(live, 10 * kRegion * 61 / 100);
  auto s = MustOpen(o, 10);
  ASSERT_TRUE(s);
  Settle(*s);
  EXPECT_EQ(s->Stats().nvme.evictions, 0u);
  EXPECT_EQ(s->Stats().nvme.used_bytes, live);
  ExpectAll(*s, disk, "disk chunks after the last restart");
  ExpectAll(*s, memory, "memory chunks after the last restart");
  ExpectAll(*s, small, "small chunks after the last restart");
}

// Six disk chunks, then memory-durability chunks until the tier has been filled twice over,
// with a restart in between (the durability of each record comes back from its summary).
// Reclaim must drop memory-durability chunks, not the older regions of disk chunks.
void FillTwiceOver(std::shared_ptr<DeviceFactory> f, const char* what) {
  const Options o = Tier(std::move(f), 10);  // no DRAM tier: chunks live on NVMe only
  std::vector<TestChunk> disk;
  uint64_t next = 100;
  for (int part = 0; part < 2; ++part) {
    auto s = MustOpen(o, 10);
    ASSERT_TRUE(s);
    for (int i = 0; part == 0 && i < 6; ++i) {
      disk.push_back(MakeChunk(i, {kHalf}));
      ASSERT_EQ(s->Put(disk.back().Request(Durability::kDisk)), PutResult::kStored);
    }
    for (int i = 0; i < 20; ++i) {
      TestChunk c = MakeChunk(next++, {kHalf});
      ASSERT_EQ(s->Put(c.Request(Durability::kMemory)), PutResult::kStored) << i;
    }
    Settle(*s);
    EXPECT_GT(s->Stats().nvme.evictions, 0u);
    ExpectAll(*s, disk, what);
    ASSERT_TRUE(s->Close(std::chrono::seconds(5)).ok());
  }
}

TEST(ReclaimTest, DiskChunksAreReclaimedLast) {
  FillTwiceOver(std::make_shared<MemDeviceFactory>(), "disk chunks");
}

TEST(ReclaimTest, DiskChunksAreReclaimedLastWhenCommitsLag) {
  // Memory-durability puts do not wait for their commits: on a slow device the regions they
  // filled are still waiting to be sealed when the tier runs out, and the only sealed regions
  // hold disk chunks. Reclaim must wait for the cheaper regions, not take those.
  auto f = std::make_shared<FaultDeviceFactory>();
  f->state("/dev/reclaim0")->SetSyncDelay(std::chrono::milliseconds(40));
  FillTwiceOver(f, "disk chunks, slow syncs");
}

// Two full runs of half-region chunks (A written first, then B), A read back, then a third
// batch that needs A's or B's space. Returns which of A's and B's chunks read back after.
struct Survivors {
  int a = 0, b = 0;
};
Survivors ReadARunThenOverflow(ReclaimOrder order) {
  auto mem = std::make_shared<MemDeviceFactory>();
  Options o = Tier(mem, 10);  // no DRAM tier: chunks live on NVMe only
  o.nvme.reclaim = order;
  auto s = MustOpen(o, 10);
  Survivors out;
  if (!s) return out;
  // A run grows to 4 regions and holds 7 records of half a region (+ header) each.
  std::vector<TestChunk> a, b;
  for (int i = 0; i < 7; ++i) a.push_back(MakeChunk(i, {kHalf}));
  for (int i = 0; i < 7; ++i) b.push_back(MakeChunk(100 + i, {kHalf}));
  for (auto* run : {&a, &b}) {
    for (auto& c : *run) EXPECT_EQ(s->Put(c.Request(Durability::kDisk)), PutResult::kStored);
  }
  Settle(*s);
  EXPECT_EQ(s->Stats().nvme.evictions, 0u);
  ExpectAll(*s, a, "run A, read back");  // the reads LRU goes by
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(s->Put(MakeChunk(200 + i, {kHalf}).Request(Durability::kDisk)), PutResult::kStored);
  }
  Settle(*s);
  EXPECT_GT(s->Stats().nvme.evictions, 0u);
  // Read chunks are "wanted", but a half-region chunk exceeds the rewrite budget (a quarter
  // of a region): whatever run reclaim took is gone.
  EXPECT_EQ(s->Stats().rewrites, 0u);
  for (auto* run : {&a, &b}) {
    for (auto& c : *run) {
      bool eq;
      ReadAll(*s, c, &eq);
      (run == &a ? out.a : out.b) += eq;
    }
  }
  return out;
}

TEST(ReclaimTest, LruReclaimsTheRegionReadLeastRecently) {
  // LRU: B was never read, so B goes and A stays although A was written first.
  const Survivors lru = ReadARunThenOverflow(ReclaimOrder::kLru);
  EXPECT_EQ(lru.a, 7);
  EXPECT_LT(lru.b, 7);
  // FIFO, the same workload: the oldest run, A, goes despite its reads.
  const Survivors fifo = ReadARunThenOverflow(ReclaimOrder::kFifo);
  EXPECT_LT(fifo.a, 7);
  EXPECT_EQ(fifo.b, 7);
}

}  // namespace
}  // namespace tw::store
