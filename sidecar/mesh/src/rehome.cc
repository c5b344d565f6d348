#include "tw/mesh/rehome.h"

#include <algorithm>

namespace tw::mesh {

std::map<std::string, std::vector<Key>> PlanReannounce(std::span<const Key> local_keys,
                                                       const Placement& old_placement,
                                                       const Placement& new_placement,
                                                       size_t replicas) {
  std::map<std::string, std::vector<Key>> plan;
  if (new_placement.size() == 0 || replicas == 0) return plan;
  for (const Key& key : local_keys) {
    std::vector<std::string> before;
    if (old_placement.size() > 0) before = old_placement.Top(key, replicas);
    for (size_t i : new_placement.TopIndices(key, replicas)) {
      const std::string& node = new_placement.nodes()[i];
      if (std::find(before.begin(), before.end(), node) == before.end()) {
        plan[node].push_back(key);
      }
    }
  }
  return plan;
}

}  // namespace tw::mesh
