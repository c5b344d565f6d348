// Reclaim must never wedge the NVMe tier. A region whose tombstones may still hide records
// elsewhere can only be released once they are carried into the open region; that takes a
// summary slot, and so a free region when the open one is full. Found by the soak
// (bench/soak.sh): with puts and deletes churning a full tier, puts took the last free region,
// every release then failed ("no free region") and puts answered `busy` for good. Reclaim now
// keeps the last free region for itself.
#include <gtest/gtest.h>

#include <chrono>

#include "store_test_util.h"
#include "tw/store/store.h"

namespace tw::store {
namespace {

using namespace testing;  // store_test_util.h

TEST(ReclaimTombstoneTest, ChurnWithDeletesNeverWedgesTheTier) {
  auto mem = std::make_shared<MemDeviceFactory>();
  // No DRAM tier: every put is an NVMe record; a tier of a few 1 MiB regions fills at once.
  const Options o = TestOptions(mem, 0, 8 * MiB, 1 * MiB);
  auto s = MustOpen(o);
  ASSERT_TRUE(s);
  int consecutive_busy = 0, stored = 0;
  for (uint64_t i = 0; i < 3000; ++i) {
    TestChunk c = MakeChunk(i, {60 * KiB});
    PutRequest r = c.Request(i % 2 ? Durability::kDisk : Durability::kMemory);
    r.deadline = Clock::now() + std::chrono::seconds(2);
    if (s->Put(r) == PutResult::kStored) {
      ++stored;
      consecutive_busy = 0;
    } else {
      ++consecutive_busy;
    }
    // A wedged tier answers every put busy: the test ends before 20 of them.
    ASSERT_LT(consecutive_busy, 20)
        << "the NVMe tier no longer frees regions (after " << stored << " puts stored)";
    // Tombstones in every region: the chunk put two steps ago goes again.
    if (i >= 2) s->Delete(MakeChunk(i - 2, {60 * KiB}).info.key);
  }
  EXPECT_GT(stored, 2900);
  EXPECT_GT(s->Stats().nvme.evictions + stored, 0u);
}

}  // namespace
}  // namespace tw::store
