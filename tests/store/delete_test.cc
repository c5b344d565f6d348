// Deletes and namespace evictions are persistent: a tombstone keeps the chunk away across
// clean restarts, power cuts, checkpoints and the reclaim of the region that holds it, and a
// put of the key after the delete is kept.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "store_test_util.h"
#include "tw/store/device.h"
#include "tw/store/store.h"

namespace tw::store {
namespace {

using namespace testing;  // store_test_util.h
constexpr char kPath[] = "/dev/delete0";

// No DRAM tier: every chunk lives on NVMe, so what comes back after a restart shows.
Options TestOptions(std::shared_ptr<DeviceFactory> f, uint64_t nvme = 64 * MiB) {
  return testing::TestOptions(std::move(f), 0, nvme, 1 * MiB, kPath);
}

bool Present(Store& s, const TestChunk& c) {
  bool eq;
  GetResult r = ReadAll(s, c, &eq);
  EXPECT_TRUE(r.miss != MissReason::kNone || eq) << "wrong bytes";
  return r.miss == MissReason::kNone;
}

// `n` chunks of `size` bytes (ids 0 to n-1), opened and put with durability disk.
std::unique_ptr<Store> OpenWithChunks(const Options& o, int n, uint64_t size,
                                      std::vector<TestChunk>* chunks) {
  for (int i = 0; i < n; ++i) chunks->push_back(MakeChunk(i, {size}));
  auto s = MustOpen(o);
  if (!s) return s;
  for (auto& c : *chunks) EXPECT_EQ(s->Put(c.Request(Durability::kDisk)), PutResult::kStored);
  return s;
}

enum class Ending { kClean, kPowerCutDropAll, kPowerCutRandom };

// Stops the store as `e` says; the next MustOpen recovers.
void Stop(std::unique_ptr<Store>& s, FaultDeviceFactory& f, Ending e, uint64_t seed = 1) {
  if (e == Ending::kClean) {
    ASSERT_TRUE(s->Close(std::chrono::seconds(5)).ok());
    s.reset();
    return;
  }
  auto state = f.state(kPath);
  state->PowerCut(
      e == Ending::kPowerCutDropAll ? FaultState::CutMode::kDropAll : FaultState::CutMode::kRandom,
      seed);
  s.reset();
  state->Revive();
}

class DeleteTest : public ::testing::TestWithParam<Ending> {};

TEST_P(DeleteTest, DeletedChunkStaysDeleted) {
  auto f = std::make_shared<FaultDeviceFactory>();
  const Options o = TestOptions(f);
  std::vector<TestChunk> chunks;
  auto s = OpenWithChunks(o, 6, 20 * KiB, &chunks);
  ASSERT_TRUE(s);
  // One deleted from the open region, then one after a checkpoint (the journal restarted).
  EXPECT_TRUE(s->Delete(chunks[1].info.key));
  ASSERT_NO_FATAL_FAILURE(Stop(s, *f, Ending::kClean));
  s = MustOpen(o);
  ASSERT_TRUE(s);
  EXPECT_FALSE(Present(*s, chunks[1]));
  EXPECT_TRUE(s->Delete(chunks[4].info.key));
  EXPECT_FALSE(s->Delete(chunks[4].info.key));
  ASSERT_NO_FATAL_FAILURE(Stop(s, *f, GetParam()));
  for (int round = 0; round < 2; ++round) {
    s = MustOpen(o);
    ASSERT_TRUE(s);
    for (int i = 0; i < 6; ++i) {
      EXPECT_EQ(Present(*s, chunks[i]), i != 1 && i != 4) << "round " << round << " chunk " << i;
    }
    EXPECT_EQ(s->Stats().nvme.chunks, 4u);
    ASSERT_NO_FATAL_FAILURE(Stop(s, *f, GetParam(), 7 + round));
  }
}

TEST_P(DeleteTest, BatchDeleteStaysDeleted) {
  auto f = std::make_shared<FaultDeviceFactory>();
  const Options o = TestOptions(f);
  std::vector<TestChunk> chunks;
  auto s = OpenWithChunks(o, 12, 12 * KiB, &chunks);
  ASSERT_TRUE(s);
  // The even chunks, a key never stored, and one of the even ones again.
  std::vector<Key> keys;
  for (int i = 0; i < 12; i += 2) keys.push_back(chunks[i].info.key);
  keys.push_back(MakeChunk(99, {4 * KiB}).info.key);
  keys.push_back(chunks[2].info.key);
  const std::vector<bool> deleted = s->DeleteMany(keys);
  ASSERT_EQ(deleted.size(), keys.size());
  for (size_t k = 0; k < 6; ++k) EXPECT_TRUE(deleted[k]) << k;
  EXPECT_FALSE(deleted[6]) << "never stored";
  EXPECT_FALSE(deleted[7]) << "deleted earlier in the same batch";
  // Every tombstone was durable when DeleteMany returned: a power cut keeps them all.
  ASSERT_NO_FATAL_FAILURE(Stop(s, *f, GetParam()));
  s = MustOpen(o);
  ASSERT_TRUE(s);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(Present(*s, chunks[i]), i % 2 == 1) << i;
}

TEST_P(DeleteTest, EvictedNamespaceStaysEvicted) {
  auto f = std::make_shared<FaultDeviceFactory>();
  const Options o = TestOptions(f);
  std::vector<TestChunk> keep, gone;
  auto s = MustOpen(o);
  ASSERT_TRUE(s);
  for (int i = 0; i < 5; ++i) {
    keep.push_back(MakeChunk(i, {10 * KiB}, TestNamespace(0), 0));
    gone.push_back(MakeChunk(100 + i, {10 * KiB}, TestNamespace(1), 1));
    ASSERT_EQ(s->Put(keep.back().Request(Durability::kDisk)), PutResult::kStored);
    ASSERT_EQ(s->Put(gone.back().Request(Durability::kDisk)), PutResult::kStored);
    if (i == 2) {  // some of the namespace in a sealed region, some in the open one
      ASSERT_NO_FATAL_FAILURE(Stop(s, *f, Ending::kClean));
      s = MustOpen(o);
      ASSERT_TRUE(s);
    }
  }
  EXPECT_EQ(s->EvictNamespace(TestNamespace(1)), 5u);
  // A put into the namespace after its eviction is kept.
  TestChunk later = MakeChunk(200, {10 * KiB}, TestNamespace(1), 1);
  ASSERT_EQ(s->Put(later.Request(Durability::kDisk)), PutResult::kStored);
  ASSERT_NO_FATAL_FAILURE(Stop(s, *f, GetParam()));
  s = MustOpen(o);
  ASSERT_TRUE(s);
  for (auto& c : keep) EXPECT_TRUE(Present(*s, c));
  for (auto& c : gone) EXPECT_FALSE(Present(*s, c));
  EXPECT_TRUE(Present(*s, later));
}

TEST_P(DeleteTest, PutAfterDeleteIsKept) {
  auto f = std::make_shared<FaultDeviceFactory>();
  const Options o = TestOptions(f);
  TestChunk a = MakeChunk(1, {30 * KiB});
  TestChunk again = MakeChunk(2, {30 * KiB});
  again.info = a.info;  // the same key, other bytes
  auto s = MustOpen(o);
  ASSERT_TRUE(s);
  ASSERT_EQ(s->Put(a.Request(Durability::kDisk)), PutResult::kStored);
  ASSERT_TRUE(s->Delete(a.info.key));
  ASSERT_EQ(s->Put(again.Request(Durability::kDisk)), PutResult::kStored);
  ASSERT_NO_FATAL_FAILURE(Stop(s, *f, GetParam()));
  s = MustOpen(o);
  ASSERT_TRUE(s);
  EXPECT_TRUE(Present(*s, again));
  // Deleted again, across a restart: gone; put once more: back.
  ASSERT_TRUE(s->Delete(a.info.key));
  ASSERT_NO_FATAL_FAILURE(Stop(s, *f, GetParam(), 3));
  s = MustOpen(o);
  ASSERT_TRUE(s);
  EXPECT_FALSE(Present(*s, again));
  ASSERT_EQ(s->Put(a.Request(Durability::kDisk)), PutResult::kStored);
  ASSERT_NO_FATAL_FAILURE(Stop(s, *f, GetParam(), 4));
  s = MustOpen(o);
  ASSERT_TRUE(s);
  EXPECT_TRUE(Present(*s, a));
}

INSTANTIATE_TEST_SUITE_P(Endings, DeleteTest,
                         ::testing::Values(Ending::kClean, Ending::kPowerCutDropAll,
                                           Ending::kPowerCutRandom));

TEST(DeleteManyTest, ManyTombstonesAcrossCheckpoints) {
  // Regions of 1 MiB hold 32 summary entries: hundreds of tombstones fill many regions and
  // outlive many checkpoints, some stops being power cuts.
  auto f = std::make_shared<FaultDeviceFactory>();
  const Options o = TestOptions(f, 128 * MiB);
  std::vector<TestChunk> chunks;
  std::vector<bool> deleted;
  auto s = MustOpen(o);
  ASSERT_TRUE(s);
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 60; ++i) {
      chunks.push_back(MakeChunk(chunks.size(), {4 * KiB}));
      deleted.push_back(false);
      ASSERT_EQ(s->Put(chunks.back().Request(Durability::kDisk)), PutResult::kStored);
    }
    // Delete two of every three chunks stored so far that are still there.
    for (size_t i = 0; i < chunks.size(); ++i) {
      if (!deleted[i] && i % 3 != 0) {
        ASSERT_TRUE(s->Delete(chunks[i].info.key)) << i;
        deleted[i] = true;
      }
    }
    ASSERT_NO_FATAL_FAILURE(
        Stop(s, *f, round % 2 ? Ending::kPowerCutRandom : Ending::kClean, round));
    s = MustOpen(o);
    ASSERT_TRUE(s);
    for (size_t i = 0; i < chunks.size(); ++i) {
      ASSERT_EQ(Present(*s, chunks[i]), !deleted[i]) << "round " << round << " chunk " << i;
    }
  }
}

TEST(DeleteManyTest, TombstoneOutlivesTheReclaimOfItsRegion) {
  // Region A: disk chunks. Region B: the tombstone of one of them and memory-durability
  // chunks. Filling the tier makes reclaim take B (its chunks are cheaper to lose) before A:
  // the tombstone must move on, or the deleted chunk comes back from A after a restart.
  auto f = std::make_shared<FaultDeviceFactory>();
  const Options o = TestOptions(f, 16 * MiB);
  std::vector<TestChunk> disk, memory;
  auto s = MustOpen(o);
  ASSERT_TRUE(s);
  for (int i = 0; i < 4; ++i) {
    disk.push_back(MakeChunk(i, {200 * KiB}));
    ASSERT_EQ(s->Put(disk.back().Request(Durability::kDisk)), PutResult::kStored);
  }
  ASSERT_NO_FATAL_FAILURE(Stop(s, *f, Ending::kClean));
  s = MustOpen(o);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Delete(disk[0].info.key));
  // No restart from here on: a recovery would apply the tombstone to A's summary at once.
  for (int i = 0; i < 3; ++i) {
    memory.push_back(MakeChunk(100 + i, {200 * KiB}));
    ASSERT_EQ(s->Put(memory.back().Request(Durability::kMemory)), PutResult::kStored);
  }
  const uint64_t regions = s->Stats().nvme.capacity_bytes / MiB;
  for (uint64_t i = 0; i < regions * 5; ++i) {
    TestChunk c = MakeChunk(1000 + i, {200 * KiB});
    ASSERT_EQ(s->Put(c.Request(Durability::kMemory)), PutResult::kStored) << i;
  }
  ASSERT_TRUE(AwaitBackgroundIdle(*s));  // reclaim caught up
  EXPECT_GT(s->Stats().nvme.evictions, 0u);
  EXPECT_FALSE(Present(*s, memory[0])) << "region B was not reclaimed";
  for (int i = 1; i < 4; ++i) EXPECT_TRUE(Present(*s, disk[i])) << i;
  ASSERT_NO_FATAL_FAILURE(Stop(s, *f, Ending::kPowerCutRandom, 9));
  s = MustOpen(o);
  ASSERT_TRUE(s);
  EXPECT_FALSE(Present(*s, disk[0]));
  for (int i = 1; i < 4; ++i) EXPECT_TRUE(Present(*s, disk[i])) << i;
}

}  // namespace
}  // namespace tw::store
