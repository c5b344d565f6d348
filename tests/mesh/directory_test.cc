#include "tw/mesh/directory.h"

#include <gtest/gtest.h>

#include <thread>

#include "fake_clock.h"

namespace tw::mesh {
namespace {

using testing::FakeClock;
using testing::TestKey;

UpdateBatch Announce(std::string node, std::vector<Key> keys) {
  UpdateBatch b{std::move(node), {}};
  for (const Key& k : keys) b.updates.push_back({k, UpdateKind::kAnnounce});
  return b;
}

UpdateBatch Withdraw(std::string node, std::vector<Key> keys) {
  UpdateBatch b{std::move(node), {}};
  for (const Key& k : keys) b.updates.push_back({k, UpdateKind::kWithdraw});
  return b;
}

class DirectoryTest : public ::testing::Test {
 protected:
  Directory::Options Opts(size_t max_keys = 1000, size_t max_holders = 4) {
    Directory::Options o;
    o.max_keys = max_keys;
    o.max_holders_per_key = max_holders;
    o.ttl = std::chrono::seconds(60);
    o.now = clock_.Fn();
    return o;
  }
  using Holders = std::vector<std::string>;
  Holders HoldersOf(Directory& d, const Key& k) {
    std::vector<Key> keys{k};
    return d.Lookup(keys)[0];
  }
  FakeClock clock_;
};

// docs/mesh.md: SHA-256("tokenwarehouse/dir/v1" ‖ namespace digest ‖ chunk key).
TEST(DirectoryKeyTest, MatchesTheSpecVector) {
  Key ns, key;
  for (uint8_t i = 0; i < 32; ++i) {
    ns.bytes[i] = i;
    key.bytes[i] = static_cast<uint8_t>(32 + i);
  }
  EXPECT_EQ(DirectoryKey(ns, key).Hex(),
            "6844cd60824069621c862114763055bfc645a599ca1efbb3cafc2c30e5fe9db8");
  EXPECT_NE(DirectoryKey(key, ns), DirectoryKey(ns, key));
}

TEST(UpdateKind, ToString) {
  EXPECT_EQ(ToString(UpdateKind::kAnnounce), "announce");
  EXPECT_EQ(ToString(UpdateKind::kWithdraw), "withdraw");
}

TEST_F(DirectoryTest, OptionsValidateNamesTheField) {
  auto o = Opts();
  o.max_keys = 0;
  EXPECT_NE(o.Validate().message().find("max_keys"), std::string_view::npos);
  o = Opts();
  o.max_holders_per_key = 0;
  EXPECT_NE(o.Validate().message().find("max_holders_per_key"), std::string_view::npos);
  o = Opts();
  o.ttl = std::chrono::seconds(0);
  EXPECT_NE(o.Validate().message().find("ttl"), std::string_view::npos);
  EXPECT_TRUE(Opts().Validate().ok());
}

TEST_F(DirectoryTest, AnnounceLookupWithdraw) {
  Directory d(Opts());
  d.Apply(Announce("a", {TestKey(1), TestKey(2)}));
  clock_.Advance(std::chrono::seconds(1));
  d.Apply(Announce("b", {TestKey(2)}));
  std::vector<Key> keys{TestKey(1), TestKey(2), TestKey(3)};
  auto found = d.Lookup(keys);
  ASSERT_EQ(found.size(), 3u);
  EXPECT_EQ(found[0], Holders{"a"});
  EXPECT_EQ(found[1], (Holders{"b", "a"}));  // most recent first
  EXPECT_TRUE(found[2].empty());

  d.Apply(Withdraw("a", {TestKey(2), TestKey(3)}));
  EXPECT_EQ(HoldersOf(d, TestKey(2)), Holders{"b"});
  d.Apply(Withdraw("b", {TestKey(2)}));
  EXPECT_TRUE(HoldersOf(d, TestKey(2)).empty());
  auto s = d.GetStats();
  EXPECT_EQ(s.keys, 1u);
  EXPECT_EQ(s.holders, 1u);
  EXPECT_EQ(s.announces, 3u);
  EXPECT_EQ(s.withdraws, 3u);
}

TEST_F(DirectoryTest, PackedLookupAnswersAsLookupDoesAndExpiresTheSame) {
  Directory d(Opts());
  d.Apply(Announce("a", {TestKey(1), TestKey(2), TestKey(4)}));
  clock_.Advance(std::chrono::seconds(40));
  d.Apply(Announce("b", {TestKey(2), TestKey(4)}));
  d.Apply(Announce("c", {TestKey(4)}));
  clock_.Advance(std::chrono::seconds(30));  // a's announcements are past the 60 s ttl
  const std::vector<Key> keys{TestKey(1), TestKey(2), TestKey(3), TestKey(4), TestKey(2)};
  Directory::Packed p;
  p.nodes = {"stale"};  // cleared first
  d.LookupPacked(keys, &p);
  ASSERT_EQ(p.offsets.size(), keys.size() + 1);
  std::vector<Holders> unpacked(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    for (uint32_t j = p.offsets[i]; j < p.offsets[i + 1]; ++j) {
      ASSERT_LT(p.holders[j], p.nodes.size());
      unpacked[i].push_back(p.nodes[p.holders[j]]);
    }
  }
  EXPECT_EQ(unpacked, (std::vector<Holders>{{}, {"b"}, {}, {"c", "b"}, {"b"}}));
  EXPECT_EQ(p.nodes, (Holders{"b", "c"}));   // each holder named once
  EXPECT_EQ(d.GetStats().expired_keys, 1u);  // key 1 had only a
  EXPECT_EQ(d.Lookup(keys), unpacked);
}

TEST_F(DirectoryTest, BatchesApplyInOrder) {
  Directory d(Opts());
  UpdateBatch b{"a",
                {{TestKey(1), UpdateKind::kAnnounce},
                 {TestKey(1), UpdateKind::kWithdraw},
                 {TestKey(2), UpdateKind::kWithdraw},
                 {TestKey(2), UpdateKind::kAnnounce}}};
  d.Apply(b);
  EXPECT_TRUE(HoldersOf(d, TestKey(1)).empty());
  EXPECT_EQ(HoldersOf(d, TestKey(2)), Holders{"a"});
}

TEST_F(DirectoryTest, ReannounceRefreshesAndDoesNotDuplicate) {
  Directory d(Opts());
  d.Apply(Announce("a", {TestKey(1)}));
  d.Apply(Announce("b", {TestKey(1)}));
  d.Apply(Announce("a", {TestKey(1)}));
  EXPECT_EQ(HoldersOf(d, TestKey(1)), (Holders{"a", "b"}));
  EXPECT_EQ(d.GetStats().holders, 2u);
}

TEST_F(DirectoryTest, StaleHoldersAreNotReturned) {
  Directory d(Opts());
  d.Apply(Announce("a", {TestKey(1)}));
  clock_.Advance(std::chrono::seconds(40));
  d.Apply(Announce("b", {TestKey(1)}));
  clock_.Advance(std::chrono::seconds(30));  // a: 70 s old, b: 30 s
  EXPECT_EQ(HoldersOf(d, TestKey(1)), Holders{"b"});
  EXPECT_EQ(d.GetStats().expired_holders, 1u);
  clock_.Advance(std::chrono::seconds(31));  // b: 61 s old
  EXPECT_TRUE(HoldersOf(d, TestKey(1)).empty());
  auto s = d.GetStats();
  EXPECT_EQ(s.keys, 0u);
  EXPECT_EQ(s.holders, 0u);
  EXPECT_EQ(s.expired_keys, 1u);
}

TEST_F(DirectoryTest, ExpireDropsExactlyTheKeysNotReannounced) {
  Directory d(Opts());
  d.Apply(Announce("a", {TestKey(1), TestKey(2), TestKey(3)}));
  clock_.Advance(std::chrono::seconds(30));
  d.Apply(Announce("b", {TestKey(2)}));  // 2 refreshed
  clock_.Advance(std::chrono::seconds(31));
  EXPECT_EQ(d.Expire(), 2u);  // 1 and 3
  auto s = d.GetStats();
  EXPECT_EQ(s.keys, 1u);
  // Key 2 keeps a stale holder record until looked up; the lookup drops it.
  EXPECT_EQ(HoldersOf(d, TestKey(2)), Holders{"b"});
  EXPECT_EQ(d.GetStats().holders, 1u);
  EXPECT_EQ(d.Expire(), 0u);
  clock_.Advance(std::chrono::seconds(30));
  EXPECT_EQ(d.Expire(), 1u);
  EXPECT_EQ(d.GetStats().keys, 0u);
}

TEST_F(DirectoryTest, KeyCapEvictsTheLeastRecentlyAnnounced) {
  Directory d(Opts(/*max_keys=*/3));
  d.Apply(Announce("a", {TestKey(1), TestKey(2), TestKey(3)}));
  d.Apply(Announce("b", {TestKey(1)}));  // 1 is now the most recent
  d.Apply(Announce("a", {TestKey(4)}));  // evicts 2
  EXPECT_TRUE(HoldersOf(d, TestKey(2)).empty());
  EXPECT_FALSE(HoldersOf(d, TestKey(1)).empty());
  EXPECT_FALSE(HoldersOf(d, TestKey(3)).empty());
  EXPECT_FALSE(HoldersOf(d, TestKey(4)).empty());
  auto s = d.GetStats();
  EXPECT_EQ(s.keys, 3u);
  EXPECT_EQ(s.evicted_keys, 1u);
  EXPECT_EQ(s.holders, 4u);  // 1:{a,b} 3:{a} 4:{a}
  for (uint64_t i = 10; i < 1000; ++i) d.Apply(Announce("c", {TestKey(i)}));
  EXPECT_EQ(d.GetStats().keys, 3u);
  EXPECT_EQ(d.GetStats().evicted_keys, 991u);
}

TEST_F(DirectoryTest, HolderCapEvictsTheLeastRecentHolder) {
  Directory d(Opts(1000, /*max_holders=*/2));
  d.Apply(Announce("a", {TestKey(1)}));
  d.Apply(Announce("b", {TestKey(1)}));
  d.Apply(Announce("c", {TestKey(1)}));
  EXPECT_EQ(HoldersOf(d, TestKey(1)), (Holders{"c", "b"}));
  EXPECT_EQ(d.GetStats().evicted_holders, 1u);
  EXPECT_EQ(d.GetStats().holders, 2u);
}

TEST_F(DirectoryTest, ForgetNodeDropsItsRecords) {
  Directory d(Opts());
  d.Apply(Announce("a", {TestKey(1), TestKey(2)}));
  d.Apply(Announce("b", {TestKey(2)}));
  EXPECT_EQ(d.ForgetNode("a"), 2u);
  EXPECT_TRUE(HoldersOf(d, TestKey(1)).empty());
  EXPECT_EQ(HoldersOf(d, TestKey(2)), Holders{"b"});
  EXPECT_EQ(d.GetStats().keys, 1u);
  EXPECT_EQ(d.GetStats().forgotten_holders, 2u);
}

TEST_F(DirectoryTest, ConcurrentBatchesKeepTheCountsTrue) {
  Directory d(Opts(/*max_keys=*/500, /*max_holders=*/4));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string node = "n" + std::to_string(t);
      for (uint64_t i = 0; i < 2000; ++i) {
        d.Apply(Announce(node, {TestKey(i), TestKey(i + 1)}));
        if (i % 3 == 0) d.Apply(Withdraw(node, {TestKey(i)}));
        std::vector<Key> keys{TestKey(i)};
        (void)d.Lookup(keys);
      }
    });
  }
  for (auto& t : threads) t.join();
  auto s = d.GetStats();
  EXPECT_LE(s.keys, 500u);
  // Recount from lookups: every key the stats count answers with its holders.
  uint64_t keys = 0, holders = 0;
  for (uint64_t i = 0; i < 2001; ++i) {
    auto h = HoldersOf(d, TestKey(i));
    keys += h.empty() ? 0 : 1;
    holders += h.size();
  }
  EXPECT_EQ(keys, s.keys);
  EXPECT_EQ(holders, s.holders);
}

}  // namespace
}  // namespace tw::mesh
