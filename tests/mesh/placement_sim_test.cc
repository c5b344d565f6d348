#include "placement_sim.h"

#include <gtest/gtest.h>

namespace tw::bench {
namespace {

PlacementSimOptions Small(size_t nodes) {
  PlacementSimOptions o;
  o.nodes = nodes;
  o.keys = 40000;
  o.sample = 40000;  // every key re-placed by tw_mesh::Placement
  o.threads = 2;
  return o;
}

// With 40,000 keys the number moved is binomial: for N = 50, about 784 ± 28 on a join. The
// bounds (±30% of the expectation) sit more than 8 standard deviations away for every N here.
TEST(PlacementSim, MovesAboutOneOverNAndAgreesWithPlacement) {
  for (size_t n : {5u, 20u, 50u}) {
    StatusOr<PlacementSimResult> r = SimulatePlacement(Small(n));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->keys, 40000u);
    EXPECT_EQ(r->initial_sample_mismatches, 0u) << n;
    EXPECT_LT(r->initial_max_over_mean_load, 1.25) << n;
    ASSERT_EQ(r->changes.size(), 3u);
    for (const PlacementChange& c : r->changes) {
      SCOPED_TRACE(c.name + " n=" + std::to_string(n));
      EXPECT_GT(c.moved, 0u);
      EXPECT_GT(c.moved_fraction, 0.7 * c.expected_fraction);
      EXPECT_LT(c.moved_fraction, 1.3 * c.expected_fraction);
      EXPECT_EQ(c.sample_mismatches, 0u);
      EXPECT_EQ(c.sample_moved_between_others, 0u);
      EXPECT_LT(c.max_over_mean_load, 1.3);
    }
    EXPECT_EQ(r->changes[0].name, "join");
    EXPECT_DOUBLE_EQ(r->changes[0].expected_fraction, 1.0 / static_cast<double>(n + 1));
    EXPECT_EQ(r->changes[1].name, "leave");
    EXPECT_DOUBLE_EQ(r->changes[1].expected_fraction, 1.0 / static_cast<double>(n));
  }
}

TEST(PlacementSim, AWeightBelowOneMovesKeysAway) {
  PlacementSimOptions o = Small(10);
  o.new_weight = 0.5;
  StatusOr<PlacementSimResult> r = SimulatePlacement(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const PlacementChange& c = r->changes[2];
  EXPECT_EQ(c.name, "weight");
  // Share 1/10 → 0.5/9.5: about 4.7% of the keys leave the node.
  EXPECT_NEAR(c.expected_fraction, 0.1 - 0.5 / 9.5, 1e-12);
  EXPECT_GT(c.moved_fraction, 0.7 * c.expected_fraction);
  EXPECT_LT(c.moved_fraction, 1.3 * c.expected_fraction);
  EXPECT_EQ(c.sample_mismatches, 0u);
}

TEST(PlacementSim, BadOptionsAreRefused) {
  PlacementSimOptions o = Small(1);
  EXPECT_EQ(SimulatePlacement(o).status().code(), StatusCode::kInvalidArgument);
  o = Small(10);
  o.keys = 0;
  EXPECT_EQ(SimulatePlacement(o).status().code(), StatusCode::kInvalidArgument);
  o = Small(10);
  o.new_weight = 1.0;
  EXPECT_EQ(SimulatePlacement(o).status().code(), StatusCode::kInvalidArgument);
  o.new_weight = -2;
  EXPECT_EQ(SimulatePlacement(o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tw::bench
