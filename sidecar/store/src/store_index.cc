// The index's bookkeeping: namespaces, pins, the DRAM objects of entries, the ghost set and
// removing entries. Every function here REQUIRES mu_ held.
#include "store_impl.h"

namespace tw::store {
namespace {

constexpr size_t kGhostCapacity = 1 << 16;

}  // namespace

uint32_t StoreImpl::Pins(Tag tag) const {
  auto it = pins_.find(tag);
  return it == pins_.end() ? 0 : it->second;
}

uint64_t StoreImpl::QuotaFor(const Key& digest) const {
  std::string hex = digest.Hex();
  for (const auto& q : opts_.quotas) {
    if (q.namespace_digest == hex) return q.bytes;
  }
  return opts_.default_namespace_quota;
}

uint32_t StoreImpl::NsId(const Key& digest) {
  auto [it, inserted] = ns_ids_.try_emplace(digest, uint32_t(ns_.size()));
  if (inserted) {
    Ns n;
    n.digest = digest;
    n.quota = QuotaFor(digest);
    ns_.push_back(std::move(n));
  }
  return it->second;
}

void StoreImpl::Pin(Tag tag, Entry& e) {
  pins_[tag]++;
  e.pinned = true;
  if (e.on_nvme()) region_pins_[nvme_->HeadOf(e.nvme_off())]++;
}

void StoreImpl::Unpin(Tag tag) {
  Entry* e = Find(tag);
  if (!e || !e->pinned) return;
  auto it = pins_.find(tag);
  if (e->on_nvme()) region_pins_[nvme_->HeadOf(e->nvme_off())]--;
  if (--it->second == 0) {
    pins_.erase(it);
    e->pinned = false;
    if (e->doomed) RemoveEntry(tag, false);
    cv_.notify_all();
  }
}

void StoreImpl::AddGhost(Tag tag) {
  if (ghost_.insert(tag).second) {
    ghost_fifo_.push_back(tag);
    if (ghost_fifo_.size() > kGhostCapacity) {
      ghost_.erase(ghost_fifo_.front());
      ghost_fifo_.pop_front();
    }
  }
}

void StoreImpl::FreeDram(Tag tag, Entry& e) {
  if (!e.in_dram) return;
  auto it = dram_ids_.find(tag);
  const uint32_t id = it->second;
  DramObj& o = dram_objs_[id];
  dram_->Remove(id);
  dram_->Free(o.off, o.len);
  free_objs_.push_back(id);
  dram_ids_.erase(it);
  e.in_dram = false;
}

void StoreImpl::AttachDram(Entry& e, const Key& key, uint64_t off, uint64_t len) {
  const Tag tag = TagOf(key);
  uint32_t id;
  if (!free_objs_.empty()) {
    id = free_objs_.back();
    free_objs_.pop_back();
  } else {
    id = uint32_t(dram_objs_.size());
    dram_objs_.push_back({});
  }
  dram_objs_[id] = DramObj{key, off, len};
  dram_ids_[tag] = id;
  e.in_dram = true;
}

bool StoreImpl::Orphan(const Entry& e) {
  if (e.parent == 0) return false;
  const Entry* p = Find(e.parent);
  return !p || p->doomed;
}

void StoreImpl::NoteEvicted(Tag tag, const Entry& e, const Key* key) {
  if (!opts_.report_evictions || e.doomed || evicted_.size() >= (size_t{1} << 16)) return;
  if (key == nullptr && e.in_dram) {
    auto it = dram_ids_.find(tag);
    if (it != dram_ids_.end()) key = &dram_objs_[it->second].key;
  }
  if (key == nullptr) return;  // only on NVMe: the index holds no full key
  evicted_.push_back({*key, ns_[e.ns].digest});
}

// Removes the entry now, or (pinned) marks it doomed so the last Unpin removes it.
void StoreImpl::RemoveEntry(Tag tag, bool to_ghost) {
  auto it = index_.find(tag);
  if (it == index_.end()) return;
  Entry& e = it->second;
  if (!e.doomed) {
    ns_[e.ns].chunks--;
    ns_[e.ns].bytes -= e.record_len();
    if (e.counted) {
      Entry* p = Find(e.parent);
      if (p && p->children > 0 && p->children < kChildrenSticky) p->children--;
      e.counted = false;
    }
  }
  if (e.pinned) {
    e.doomed = true;
    if (to_ghost) AddGhost(tag);
    return;
  }
  FreeDram(tag, e);
  index_.erase(it);
  if (to_ghost) AddGhost(tag);
}

}  // namespace tw::store
