#include "tw/mesh/placement.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "fake_clock.h"

namespace tw::mesh {
namespace {

using testing::TestKey;

Membership Members(std::vector<std::pair<std::string, double>> nodes) {
  std::vector<Peer> peers;
  for (auto& [name, weight] : nodes) peers.push_back({name, "10.0.0.1", 7470, weight});
  return *Membership::Create(std::move(peers), 1);
}

Membership Uniform(size_t n, size_t first = 0) {
  std::vector<std::pair<std::string, double>> nodes;
  for (size_t i = first; i < first + n; ++i) nodes.push_back({"node-" + std::to_string(i), 1.0});
  return Members(std::move(nodes));
}

// The spec's vectors (docs/mesh.md), computed by an independent implementation of the spec
// (Python: hashlib.sha256, the fmix64 finaliser, math.log).
TEST(PlacementSpec, Vectors) {
  EXPECT_EQ(Fmix64(0), 0u);
  EXPECT_EQ(Fmix64(1), 0xb456bcfc34c2cb2cULL);
  EXPECT_EQ(PlacementSeed("a"), 0x3e18fc1b88eee38eULL);
  EXPECT_EQ(PlacementSeed("node-1"), 0x8f9f751d5170e265ULL);
  EXPECT_EQ(PlacementSeed("worker-03.example"), 0xa7c7476fa8a8d3cbULL);

  // Keys: SHA-256("tokenwarehouse/place/test/" ‖ decimal i), i = 0..3.
  // Members: a (weight 1), b (1), c (2), d (1), e (0.5).
  struct Vector {
    const char* key;
    std::vector<std::string> order;
    double score_a;
  };
  const Vector vectors[] = {
      {"efc8d3ace40e6acd017eb4131ada90ab5f9380902a9526a935e346e91914048f",
       {"a", "c", "d", "e", "b"},
       4.6532618651155664},
      {"5d202f3525655f7af287efde2dfef61673a1d1e0620ea752043f717ff7e52b6b",
       {"c", "b", "a", "d", "e"},
       1.444259086831319},
      {"1049a331bb2ce8deda4f1080a7e9a2d22b10dfa5682dabf025d3c1f0ebb95a35",
       {"c", "b", "d", "e", "a"},
       0.24564105286233559},
      {"e07e80d977e9078fc5fc92c2db7ef2e470ec46d08933651add50a0556124c0d5",
       {"c", "b", "a", "d", "e"},
       1.0478876764472271},
  };
  Placement p(Members({{"a", 1.0}, {"b", 1.0}, {"c", 2.0}, {"d", 1.0}, {"e", 0.5}}));
  for (const Vector& v : vectors) {
    Key key = *Key::FromHex(v.key);
    EXPECT_EQ(p.Top(key, 5), v.order) << v.key;
    EXPECT_EQ(p.Home(key), v.order[0]) << v.key;
    EXPECT_DOUBLE_EQ(PlacementScore(key, PlacementSeed("a"), 1.0), v.score_a) << v.key;
  }
}

// Equal weights take the no-logarithm path: it ranks exactly as the spec's scores do.
TEST(Placement, EqualWeightsRankAsTheScores) {
  for (double w : {1.0, 2.5}) {
    std::vector<std::pair<std::string, double>> nodes;
    for (int i = 0; i < 7; ++i) nodes.push_back({"n" + std::to_string(i), w});
    const Placement p(Members(nodes));
    for (int i = 0; i < 2000; ++i) {
      const Key key = TestKey(static_cast<uint64_t>(i));
      std::vector<std::pair<double, size_t>> scores;
      for (size_t n = 0; n < p.size(); ++n) {
        scores.push_back({PlacementScore(key, PlacementSeed(p.nodes()[n]), w), n});
      }
      std::stable_sort(scores.begin(), scores.end(),
                       [](const auto& a, const auto& b) { return a.first > b.first; });
      ASSERT_EQ(p.HomeIndex(key), scores[0].second) << i;
      const std::vector<size_t> top = p.TopIndices(key, 3);
      for (size_t k = 0; k < 3; ++k) ASSERT_EQ(top[k], scores[k].second) << i << " rank " << k;
    }
  }
}

TEST(Placement, EmptyAndSingle) {
  Placement none(Uniform(0));
  EXPECT_EQ(none.size(), 0u);
  EXPECT_TRUE(none.TopIndices(TestKey(1), 3).empty());
  Placement one(Uniform(1));
  EXPECT_EQ(one.Home(TestKey(1)), "node-0");
  EXPECT_EQ(one.Top(TestKey(1), 3), std::vector<std::string>{"node-0"});
}

TEST(Placement, TopKIsDistinctAndStartsWithTheHome) {
  Placement p(Uniform(7));
  for (uint64_t i = 0; i < 1000; ++i) {
    std::vector<size_t> top = p.TopIndices(TestKey(i), 3);
    ASSERT_EQ(top.size(), 3u);
    EXPECT_EQ(top[0], p.HomeIndex(TestKey(i)));
    EXPECT_NE(top[0], top[1]);
    EXPECT_NE(top[1], top[2]);
    EXPECT_NE(top[0], top[2]);
  }
}

void ExpectBalanced(const Membership& m, size_t keys, double tolerance) {
  Placement p(m);
  std::vector<size_t> count(p.size());
  for (uint64_t i = 0; i < keys; ++i) ++count[p.HomeIndex(TestKey(i))];
  double total_weight = 0;
  for (const Peer& peer : m.peers()) total_weight += peer.weight;
  for (size_t i = 0; i < p.size(); ++i) {
    const double expected = static_cast<double>(keys) * m.peers()[i].weight / total_weight;
    EXPECT_NEAR(static_cast<double>(count[i]) / expected, 1.0, tolerance)
        << p.nodes()[i] << ": " << count[i] << " keys, expected " << expected;
  }
}

TEST(Placement, BalancedOverUniformWeights) { ExpectBalanced(Uniform(10), 100000, 0.05); }

TEST(Placement, BalancedInProportionToWeights) {
  ExpectBalanced(Members({{"a", 1.0}, {"b", 1.0}, {"c", 2.0}, {"d", 4.0}, {"e", 0.5}}), 100000,
                 0.05);
}

TEST(Placement, AJoinMovesAboutOneNthAndOnlyToTheNewNode) {
  const size_t kKeys = 100000;
  Placement before(Uniform(10));
  Placement after(Uniform(11));  // node-10 joins
  size_t moved = 0;
  for (uint64_t i = 0; i < kKeys; ++i) {
    const std::string& a = before.Home(TestKey(i));
    const std::string& b = after.Home(TestKey(i));
    if (a != b) {
      ++moved;
      ASSERT_EQ(b, "node-10") << "a key moved between two nodes that both stayed";
    }
  }
  EXPECT_NEAR(static_cast<double>(moved) / kKeys, 1.0 / 11, 0.01);
}

TEST(Placement, ALeaveMovesOnlyTheLeaversKeys) {
  const size_t kKeys = 100000;
  Placement before(Uniform(10));
  Placement after(Uniform(9, 1));  // node-0 leaves
  size_t moved = 0;
  for (uint64_t i = 0; i < kKeys; ++i) {
    const std::string& a = before.Home(TestKey(i));
    const std::string& b = after.Home(TestKey(i));
    if (a != b) {
      ++moved;
      ASSERT_EQ(a, "node-0") << "a key left a node that stayed";
    }
  }
  EXPECT_NEAR(static_cast<double>(moved) / kKeys, 1.0 / 10, 0.01);
}

TEST(Placement, AWeightChangeMovesKeysOnlyToOrFromThatNode) {
  Placement before(Members({{"a", 1.0}, {"b", 1.0}, {"c", 1.0}}));
  Placement after(Members({{"a", 1.0}, {"b", 1.0}, {"c", 2.0}}));
  size_t moved = 0;
  for (uint64_t i = 0; i < 30000; ++i) {
    const std::string& a = before.Home(TestKey(i));
    const std::string& b = after.Home(TestKey(i));
    if (a != b) {
      ++moved;
      ASSERT_EQ(b, "c");
    }
  }
  // c's share goes from 1/3 to 1/2: a sixth of the keys move.
  EXPECT_NEAR(static_cast<double>(moved) / 30000, 1.0 / 6, 0.02);
}

TEST(Placement, SameMembersSameHomesWhateverTheFileOrder) {
  Placement p1(Members({{"x", 1.0}, {"y", 1.0}, {"z", 1.0}}));
  Placement p2(Members({{"z", 1.0}, {"x", 1.0}, {"y", 1.0}}));
  for (uint64_t i = 0; i < 1000; ++i) EXPECT_EQ(p1.Top(TestKey(i), 3), p2.Top(TestKey(i), 3));
}

}  // namespace
}  // namespace tw::mesh
