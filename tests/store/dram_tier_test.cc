#include "dram_tier.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace tw::store {
namespace {

std::unique_ptr<DramTier> Make(uint64_t cap, DramEviction e) {
  DramTier::Options o;
  o.capacity = cap;
  o.eviction = e;
  auto t = DramTier::Create(o);
  EXPECT_TRUE(t.ok());
  return std::move(*t);
}

TEST(DramTierTest, ArenaIsAlignedAndExtentsCoalesce) {
  auto t = Make(1 << 20, DramEviction::kS3Fifo);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->base()) % (2 << 20), 0u);
  auto a = t->Allocate(4096), b = t->Allocate(10000), c = t->Allocate(4096);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(t->used(), 4096u * 5);
  t->Free(*b, 10000);
  EXPECT_FALSE(t->Allocate(1 << 20));
  t->Free(*a, 4096);
  t->Free(*c, 4096);
  EXPECT_EQ(t->used(), 0u);
  EXPECT_EQ(t->largest_free(), 1u << 20);  // fully coalesced
  auto all = t->Allocate(1 << 20);
  ASSERT_TRUE(all);
  EXPECT_FALSE(t->Allocate(4096));
}

TEST(DramTierTest, S3FifoEvictsOneHitWondersFirst) {
  auto t = Make(20 * 4096, DramEviction::kS3Fifo);
  auto any = [](uint32_t) { return true; };
  for (uint32_t id = 0; id < 20; ++id) t->Insert(id, 4096, false);
  t->Touch(0);  // hit while probationary → promoted to main
  t->Touch(1);
  auto v = t->PickVictim(any);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 2u);
  // Objects the caller cannot evict keep their place.
  v = t->PickVictim([](uint32_t id) { return id != 3; });
  EXPECT_EQ(*v, 4u);
  // A recently evicted object goes straight to main: it, and the promoted ones, outlive the
  // one-hit wonders of the small queue.
  t->Insert(50, 4096, true);
  std::vector<uint32_t> order;
  while (auto x = t->PickVictim(any)) order.push_back(*x);
  ASSERT_EQ(order.size(), 19u);
  for (size_t i = 0; i < 14; ++i) {
    EXPECT_NE(order[i], 0u);
    EXPECT_NE(order[i], 1u);
    EXPECT_NE(order[i], 50u);
  }
}

TEST(DramTierTest, LruEvictsLeastRecentlyUsed) {
  auto t = Make(100 * 4096, DramEviction::kLru);
  for (uint32_t id = 0; id < 4; ++id) t->Insert(id, 4096, false);
  t->Touch(0);
  auto any = [](uint32_t) { return true; };
  EXPECT_EQ(*t->PickVictim(any), 1u);
  t->Remove(2);
  EXPECT_EQ(*t->PickVictim(any), 3u);
  EXPECT_EQ(*t->PickVictim(any), 0u);
  EXPECT_FALSE(t->PickVictim(any));
}

TEST(DramTierTest, TouchLastFirstLeavesTheFirstMostRecent) {
  auto t = Make(100 * 4096, DramEviction::kLru);
  for (uint32_t id = 0; id < 4; ++id) t->Insert(id, 4096, false);
  // A lookup's chain: touched 1, 0, 2 (999 has no object and is skipped), so 2 ends up the
  // most recently used and 3, untouched, the least.
  const std::vector<uint32_t> chain = {2, 0, 1, 999};
  t->TouchLastFirst(chain);
  auto any = [](uint32_t) { return true; };
  std::vector<uint32_t> order;
  while (auto x = t->PickVictim(any)) order.push_back(*x);
  EXPECT_EQ(order, (std::vector<uint32_t>{3, 1, 0, 2}));
}

TEST(DramTierTest, TouchLastFirstCountsAHitPerObject) {
  // S3-FIFO: as Touch() of each, a hit promotes a probationary object to the main queue. (A
  // capacity of the four objects keeps the small queue above its 10% share: victims come from
  // it first.)
  auto t = Make(4 * 4096, DramEviction::kS3Fifo);
  for (uint32_t id = 0; id < 4; ++id) t->Insert(id, 4096, false);
  const std::vector<uint32_t> chain = {1, 2};
  t->TouchLastFirst(chain);
  auto any = [](uint32_t) { return true; };
  std::vector<uint32_t> order;
  while (auto x = t->PickVictim(any)) order.push_back(*x);
  EXPECT_EQ(order, (std::vector<uint32_t>{0, 3, 1, 2}));
}

}  // namespace
}  // namespace tw::store
