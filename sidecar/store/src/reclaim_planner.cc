#include "reclaim_planner.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"

namespace tw::store::reclaim {

Pricer::Pricer(std::span<const NvmeEngine::RegionView> regions)
    : regions_(regions), cost_(regions.size(), kLosesNothing) {
  for (const NvmeEngine::RegionView& v : regions_) {
    if (v.run == NvmeEngine::RunState::kNotFull) cost_[v.head] = kUnpriced;
  }
}

void Pricer::AddChunk(uint32_t region, bool disk) {
  if (region >= regions_.size()) return;
  uint8_t& c = cost_[regions_[region].head];
  if (c != kUnpriced) c = std::max<uint8_t>(c, disk ? kLosesDisk : kLosesMemory);
}

FreeRegionBounds Bounds(uint32_t region_count, double high_watermark, double low_watermark) {
  const double total = region_count;
  FreeRegionBounds b;
  b.start_below = std::max<uint32_t>(1, uint32_t(total * (1.0 - high_watermark)));
  b.stop_at = std::max<uint32_t>(b.start_below + 1, uint32_t(total * (1.0 - low_watermark)));
  return b;
}

std::vector<uint32_t> OrderCandidates(std::vector<SealedRegion> sealed, ReclaimOrder order,
                                      const Prices& cost) {
  auto key = [order](const SealedRegion& s) {
    return std::make_pair(order == ReclaimOrder::kFifo ? s.seal_seq : s.last_access, s.region);
  };
  std::sort(sealed.begin(), sealed.end(),
            [&](const SealedRegion& a, const SealedRegion& b) { return key(a) < key(b); });
  std::vector<uint32_t> out;
  out.reserve(sealed.size());
  for (const SealedRegion& s : sealed) out.push_back(s.region);
  std::stable_sort(out.begin(), out.end(),
                   [&](uint32_t a, uint32_t b) { return cost[a] < cost[b]; });
  return out;
}

PriceCheck CheckPrices(std::span<const NvmeEngine::RegionView> regions, const Prices& cost,
                       uint8_t best) {
  if (best == kUnpriced) return {PriceCheck::kReprice, 0};  // sealed since the prices were made
  for (const NvmeEngine::RegionView& v : regions) {
    // A run that was not full when priced may be cheaper: wait for it too.
    const uint8_t c = cost[v.head] == kUnpriced ? uint8_t{kLosesNothing} : cost[v.head];
    if (v.run != NvmeEngine::RunState::kSealing || c >= best) continue;
    return {PriceCheck::kAwaitSeal, v.head};
  }
  return {PriceCheck::kHold, 0};
}

RegionPlan PlanRegion(std::span<const LiveChunk> live, uint64_t rewrite_budget) {
  const size_t n = live.size();
  absl::flat_hash_map<uint64_t, size_t> pos;  // tag → index
  for (size_t i = 0; i < n; ++i) pos.try_emplace(live[i].tag, i);
  auto parent_in_region = [&](size_t i) -> int64_t {
    if (live[i].parent == 0) return -1;
    auto it = pos.find(live[i].parent);
    return it == pos.end() ? -1 : int64_t(it->second);
  };
  // Children within the region, and each chunk's parent within it.
  std::vector<uint32_t> inside(n, 0);
  std::vector<int64_t> up(n, -1);
  for (size_t i = 0; i < n; ++i) {
    const int64_t p = parent_in_region(i);
    if (p < 0) continue;
    inside[size_t(p)]++;
    if (size_t(p) != i) up[i] = p;
  }
  // Each chunk's depth within the region (its chain's top is 1) and that top.
  std::vector<int> depth(n, 0);  // 0: not known yet
  std::vector<size_t> top(n, 0);
  for (size_t i = 0; i < n; ++i) {
    std::vector<size_t> path;
    size_t j = i;
    while (depth[j] == 0 && path.size() <= n) {
      path.push_back(j);
      if (up[j] < 0) break;
      j = size_t(up[j]);
    }
    int d = depth[j];
    const size_t t = d ? top[j] : j;
    for (size_t k = path.size(); k-- > 0;) {
      depth[path[k]] = ++d;
      top[path[k]] = t;
    }
  }
  // Wanted: read since written, or with stored children outside the region; then every
  // ancestor in the region, unless the chain's top is an orphan.
  std::vector<bool> want(n, false);
  for (size_t i = 0; i < n; ++i) {
    const LiveChunk& c = live[i];
    const bool outside = c.children == kChildrenSticky || c.children > inside[i] || c.hit;
    if (!outside || live[top[i]].orphan) continue;
    for (int64_t j = int64_t(i); j >= 0 && !want[size_t(j)]; j = up[size_t(j)]) {
      want[size_t(j)] = true;
    }
  }
  RegionPlan plan;
  std::vector<std::pair<int, size_t>> keep;  // (depth, index): ancestors first
  for (size_t i = 0; i < n; ++i) {
    if (live[i].in_dram) {
      (want[i] ? plan.write_back : plan.dram_only).push_back(i);
    } else if (want[i]) {
      keep.push_back({depth[i], i});
    }
  }
  std::sort(keep.begin(), keep.end());
  // Ancestors first, until the first that does not fit: a descendant kept without its
  // ancestor would be unreachable.
  std::vector<bool> kept(n, false);
  for (auto [d, i] : keep) {
    if (live[i].record_bytes > rewrite_budget) break;
    rewrite_budget -= live[i].record_bytes;
    plan.rewrite.push_back(i);
    kept[i] = true;
  }
  // Drop the rest, the last written first.
  for (size_t i = n; i-- > 0;) {
    if (!live[i].in_dram && !kept[i]) plan.drop.push_back(i);
  }
  return plan;
}

}  // namespace tw::store::reclaim
