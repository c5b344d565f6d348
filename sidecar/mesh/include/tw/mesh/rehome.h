// Rehoming: when the membership changes, which of a holder's keys must be announced to which
// node, so that every key's new home (and new replica homes) learns that this node holds it.
//
// A key is sent to each node in its new top-`replicas` homes that was not in its old top
// `replicas` homes. With the same membership nothing is sent; after a restart (old membership
// empty) every key is sent to its homes, which is how a restarted twd re-announces what it
// recovered. Nodes that left simply stop being asked; their directories are gone with them.
//
// Pure function; thread-safe. Cost: one placement of each key in both memberships.
#pragma once

#include <map>
#include <span>
#include <string>
#include <vector>

#include "tw/common/keys.h"
#include "tw/mesh/placement.h"

namespace tw::mesh {

// Keys to announce, grouped by destination node (sorted by node name; keys in input order).
std::map<std::string, std::vector<Key>> PlanReannounce(std::span<const Key> local_keys,
                                                       const Placement& old_placement,
                                                       const Placement& new_placement,
                                                       size_t replicas = 1);

}  // namespace tw::mesh
