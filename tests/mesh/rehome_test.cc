#include "tw/mesh/rehome.h"

#include <gtest/gtest.h>

#include "fake_clock.h"

namespace tw::mesh {
namespace {

using testing::TestKey;

Membership Nodes(std::vector<std::string> names) {
  std::vector<Peer> peers;
  for (auto& n : names) peers.push_back({n, "10.0.0.1", 7470, 1.0});
  return *Membership::Create(std::move(peers), 1);
}

std::vector<Key> Keys(size_t n) {
  std::vector<Key> keys;
  for (uint64_t i = 0; i < n; ++i) keys.push_back(TestKey(i));
  return keys;
}

TEST(PlanReannounce, SameMembershipSendsNothing) {
  Placement p(Nodes({"a", "b", "c"}));
  EXPECT_TRUE(PlanReannounce(Keys(1000), p, p).empty());
  EXPECT_TRUE(PlanReannounce(Keys(1000), p, p, 2).empty());
}

TEST(PlanReannounce, AfterARestartEveryKeyGoesToItsHome) {
  Placement none(Nodes({}));
  Placement p(Nodes({"a", "b", "c"}));
  auto keys = Keys(1000);
  auto plan = PlanReannounce(keys, none, p);
  size_t total = 0;
  for (auto& [node, ks] : plan) {
    for (const Key& k : ks) EXPECT_EQ(p.Home(k), node);
    total += ks.size();
  }
  EXPECT_EQ(total, keys.size());
}

TEST(PlanReannounce, AJoinSendsTheMovedKeysToTheNewNodeOnly) {
  Placement before(Nodes({"a", "b", "c"}));
  Placement after(Nodes({"a", "b", "c", "d"}));
  auto keys = Keys(4000);
  auto plan = PlanReannounce(keys, before, after);
  ASSERT_EQ(plan.size(), 1u);
  ASSERT_TRUE(plan.count("d"));
  size_t expected = 0;
  for (const Key& k : keys) expected += after.Home(k) == "d" ? 1 : 0;
  EXPECT_EQ(plan["d"].size(), expected);
  for (const Key& k : plan["d"]) EXPECT_EQ(after.Home(k), "d");
}

TEST(PlanReannounce, ALeaveSendsTheLeaversKeysToTheirNewHomes) {
  Placement before(Nodes({"a", "b", "c", "d"}));
  Placement after(Nodes({"a", "b", "c"}));
  auto keys = Keys(4000);
  auto plan = PlanReannounce(keys, before, after);
  size_t total = 0;
  for (auto& [node, ks] : plan) {
    for (const Key& k : ks) {
      EXPECT_EQ(before.Home(k), "d");
      EXPECT_EQ(after.Home(k), node);
    }
    total += ks.size();
  }
  size_t expected = 0;
  for (const Key& k : keys) expected += before.Home(k) == "d" ? 1 : 0;
  EXPECT_EQ(total, expected);
}

TEST(PlanReannounce, ReplicasSendToEachNewMemberOfTheTopK) {
  Placement before(Nodes({"a", "b", "c"}));
  Placement after(Nodes({"a", "b", "c", "d"}));
  auto keys = Keys(2000);
  auto plan = PlanReannounce(keys, before, after, /*replicas=*/2);
  ASSERT_EQ(plan.size(), 1u);  // only d enters anyone's top 2
  size_t expected = 0;
  for (const Key& k : keys) {
    auto top = after.Top(k, 2);
    expected += (top[0] == "d" || top[1] == "d") ? 1 : 0;
  }
  EXPECT_EQ(plan["d"].size(), expected);
}

}  // namespace
}  // namespace tw::mesh
