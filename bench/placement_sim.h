// The placement simulation behind `tw-bench placement`: virtual nodes, no processes, no
// network. Places `keys` random keys over `nodes` nodes of weight 1 with the spec's weighted
// rendezvous hashing (tw_mesh's PlacementSeed / PlacementScore), then applies, each to that
// same starting membership, three changes: a node joins, a node leaves, one node's weight
// changes. For each it counts the keys whose home moved (expected: about 1/N of them) and the
// directory load (keys homed per node: max over mean).
//
// The initial placement keeps each key's two best scores, so each change is computed in one
// pass over the keys (a join compares the newcomer's score with the best, a leave promotes
// the second best, a weight change scales the node's score: score is linear in weight). A
// sample of keys is then placed again from scratch by tw_mesh's Placement over each changed
// membership, and every disagreement is counted: the shortcut must agree with the real thing.
//
// Threading: SimulatePlacement splits the keys over `threads` threads it joins before
// returning; nothing is shared between calls. Cost: nodes × keys score evaluations for the
// initial placement, keys × 3 for the changes, sample × nodes × 3 for the check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tw/common/status.h"

namespace tw::bench {

struct PlacementSimOptions {
  size_t nodes = 1000;      // members before a change; >= 2
  size_t keys = 1000000;    // keys placed; >= 1
  double new_weight = 2.0;  // the weight one node changes to (from 1); > 0, != 1
  size_t sample = 2000;     // keys re-placed by tw_mesh::Placement per change (capped at keys)
  uint64_t seed = 1;        // of the random keys
  unsigned threads = 0;     // 0: one per CPU
};

// One change applied to the starting membership.
struct PlacementChange {
  std::string name;              // "join", "leave", "weight"
  size_t moved = 0;              // keys whose home changed
  double moved_fraction = 0;     // moved / keys
  double expected_fraction = 0;  // what rendezvous hashing moves in expectation
  // Sample keys whose Placement-computed home moved between two other nodes (must be 0).
  size_t sample_moved_between_others = 0;
  // Keys homed on the busiest node over the mean, after the change (per unit of weight).
  double max_over_mean_load = 0;
  size_t sample_mismatches = 0;  // sample keys whose home differs from Placement's (must be 0)
};

struct PlacementSimResult {
  size_t nodes = 0;
  size_t keys = 0;
  size_t sample = 0;
  double initial_max_over_mean_load = 0;
  size_t initial_sample_mismatches = 0;
  std::vector<PlacementChange> changes;  // join, leave, weight
  double seconds = 0;                    // wall time of the whole simulation
};

// Runs the simulation. INVALID_ARGUMENT names a bad option.
StatusOr<PlacementSimResult> SimulatePlacement(const PlacementSimOptions& options);

}  // namespace tw::bench
