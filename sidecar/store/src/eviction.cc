// Eviction inside the Store: a namespace over its quota evicts inside itself (a clock over
// insertion order), and the DRAM tier evicts (leaves and orphans first) to make room for a put
// or to get below its high watermark. NVMe regions are reclaimed elsewhere (reclaim_planner.h).
// Every function here REQUIRES mu_ held.
#include <algorithm>
#include <chrono>

#include "store_impl.h"

namespace tw::store {

// Evicts chunks of namespace `ns` (any tier, unpinned) until `need` more bytes fit its quota.
// Order: the namespace's clock over insertion order. Chunks whose parent is gone go first;
// a chunk read since the clock last passed it, or with stored children, gets another round;
// when a whole round finds nothing else, chunks with children go too, oldest first.
bool StoreImpl::MakeRoomInNamespace(uint32_t ns, uint64_t need) {
  Ns& n = ns_[ns];
  if (n.quota == 0 || n.bytes + need <= n.quota) return true;
  if (need > n.quota) return false;
  for (int pass = 0; pass < 2 && n.bytes + need > n.quota; ++pass) {
    // Two rounds: the first may only clear reference bits.
    size_t budget = 2 * n.order.size() + 1;
    while (budget-- > 0 && !n.order.empty() && n.bytes + need > n.quota) {
      const Tag t = n.order.front();
      n.order.pop_front();
      Entry* e = Find(t);
      if (!e || e->ns != ns || e->doomed) continue;  // removed since
      if (!e->ready || e->pinned) {
        n.order.push_back(t);
        continue;
      }
      if (pass == 0 && !Orphan(*e)) {
        if (e->qref) {
          e->qref = false;
          n.order.push_back(t);
          continue;
        }
        if (e->children > 0) {
          n.order.push_back(t);
          continue;
        }
      }
      if (e->in_dram && !e->on_nvme()) stats_.dropped_unwritten += e->dirty;
      NoteEvicted(t, *e, nullptr);
      RemoveEntry(t, true);
      stats_.nvme.evictions++;
    }
  }
  return n.bytes + need <= n.quota;
}

void StoreImpl::NoteInNamespace(uint32_t ns, Tag tag) {
  Ns& n = ns_[ns];
  if (n.quota == 0) return;
  n.order.push_back(tag);
  if (n.order.size() > 2 * n.chunks + 1024) RebuildOrder(ns);
}

// Rebuilds a namespace's quota order from its live entries, keeping the current order where
// there is one (index order for the rest).
void StoreImpl::RebuildOrder(uint32_t ns) {
  Ns& n = ns_[ns];
  std::deque<Tag> order;
  absl::flat_hash_set<Tag> in;
  for (Tag t : n.order) {
    const Entry* e = Find(t);
    if (e && e->ns == ns && !e->doomed && in.insert(t).second) order.push_back(t);
  }
  for (auto& [t, e] : index_) {
    if (e.ns == ns && !e.doomed && !in.contains(t)) order.push_back(t);
  }
  n.order = std::move(order);
}

std::optional<uint32_t> StoreImpl::PickDramVictim(
    const std::function<bool(const Entry&)>& evictable) {
  // First leaves and orphans: a chunk whose descendants are stored outlives them.
  for (int pass = 0; pass < 2; ++pass) {
    auto victim = dram_->PickVictim([&](uint32_t id) {
      const Entry* e = Find(TagOf(dram_objs_[id].key));
      if (!e || !evictable(*e)) return false;
      return pass == 1 || e->children == 0 || Orphan(*e);
    });
    if (victim) return victim;
  }
  return std::nullopt;
}

std::optional<uint64_t> StoreImpl::AllocateDram(uint64_t len, Deadline deadline,
                                                std::unique_lock<std::mutex>& l) {
  const auto started = Clock::now();
  while (true) {
    if (auto off = dram_->Allocate(len)) return off;
    // Past the deadline (or two seconds without one), chunks that wait for write-back may be
    // dropped: the put must not block on a slow or failing NVMe tier forever.
    auto now = Clock::now();
    bool drop_dirty = now >= deadline || now - started > std::chrono::seconds(2);
    auto victim = PickDramVictim([&](const Entry& e) {
      if (e.pinned || !e.ready) return false;
      return !e.dirty || drop_dirty;
    });
    if (victim) {
      const Tag t = TagOf(dram_objs_[*victim].key);
      Entry* e = Find(t);
      stats_.dram.evictions++;
      if (e->on_nvme()) {
        FreeDram(t, *e);  // demoted: it stays on NVMe
      } else {
        if (e->dirty || e->unwritten) stats_.dropped_unwritten++;
        NoteEvicted(t, *e, &dram_objs_[*victim].key);
        RemoveEntry(t, true);
      }
      continue;
    }
    if (drop_dirty && now >= deadline) return std::nullopt;
    work_cv_.notify_all();
    cv_.wait_until(l, std::min(deadline, now + std::chrono::milliseconds(20)));
    if (stop_) return std::nullopt;
  }
}

void StoreImpl::TrimDram() {
  if (!dram_) return;
  const double cap = double(dram_->capacity());
  if (double(dram_->used()) <= opts_.dram.high_watermark * cap) return;
  while (double(dram_->used()) > opts_.dram.low_watermark * cap) {
    auto victim = PickDramVictim([&](const Entry& e) {
      return !e.pinned && e.ready && !e.dirty && !e.unwritten && e.on_nvme();
    });
    if (!victim) return;
    const Tag t = TagOf(dram_objs_[*victim].key);
    FreeDram(t, *Find(t));  // demoted: the chunk stays on NVMe
    stats_.dram.evictions++;
    cv_.notify_all();
  }
}

}  // namespace tw::store
