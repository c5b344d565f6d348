// Delete and namespace eviction: removing the entries and making the removal durable with a
// tombstone in the NVMe tier's journal.
#include <chrono>

#include "store_impl.h"
#include "tw/common/log.h"

namespace tw::store {

StatusOr<std::future<Status>> StoreImpl::StartTombstone(EntryKind kind, const Key& key,
                                                        const Key& ns,
                                                        const std::function<void()>& sequenced) {
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  while (true) {
    auto a = nvme_->AllocateEntry();
    if (a.ok()) {
      sequenced();
      SummaryEntry t;
      t.kind = kind;
      t.key = key;
      t.ns = ns;
      t.region = a->region;
      t.offset = uint64_t(a->region) * nvme_->region_size();
      t.seq = a->seq;
      t.epoch = a->epoch;
      return nvme_->CommitAsync(*a, t);
    }
    if (a.status().code() != StatusCode::kResourceExhausted || Clock::now() >= deadline) {
      sequenced();
      return a.status();
    }
    std::unique_lock<std::mutex> l(mu_);
    if (stop_) {
      l.unlock();
      sequenced();
      return CancelledError("store closing");
    }
    reclaim_wanted_ = true;
    work_cv_.notify_all();
    cv_.wait_for(l, std::chrono::milliseconds(20));
  }
}

Status StoreImpl::PersistTombstone(EntryKind kind, const Key& key, const Key& ns,
                                   const std::function<void()>& sequenced) {
  TW_ASSIGN_OR_RETURN(std::future<Status> durable, StartTombstone(kind, key, ns, sequenced));
  return durable.get();
}

StoreImpl::Removal StoreImpl::RemoveForDelete(const Key& key) {
  const Tag t = TagOf(key);
  // The full key of a chunk only on NVMe is in its record header: read it (unlocked), then
  // remove the entry if it has not moved meanwhile (retry if it has).
  for (int attempt = 0; attempt < 3; ++attempt) {
    uint64_t at = kNoNvme;
    {
      std::lock_guard<std::mutex> l(mu_);
      Entry* e = Find(t);
      if (!e || !e->ready || e->doomed) return Removal::kAbsent;
      if (e->in_dram && dram_objs_[DramId(t)].key != key) return Removal::kAbsent;
      if (!e->in_dram) at = e->nvme_off();
    }
    if (at != kNoNvme && !StatTag(t, &key)) return Removal::kAbsent;
    std::lock_guard<std::mutex> l(mu_);
    Entry* e = Find(t);
    if (!e || !e->ready || e->doomed) return Removal::kAbsent;
    if (e->in_dram ? dram_objs_[DramId(t)].key != key : e->nvme_off() != at) continue;
    if (!nvme_) {
      RemoveEntry(t, false);
      return Removal::kRemoved;
    }
    // Pinned and doomed: a put of the key answers `busy` until the tombstone has its sequence
    // number, so a put after the delete always orders after it.
    Pin(t, *e);
    RemoveEntry(t, false);
    return Removal::kTombstone;
  }
  return Removal::kAbsent;
}

bool StoreImpl::Delete(const Key& key) { return DeleteMany(std::span<const Key>(&key, 1))[0]; }

std::vector<bool> StoreImpl::DeleteMany(std::span<const Key> keys) {
  std::vector<bool> out(keys.size(), false);
  // Every tombstone is sequenced (and its chunk unpinned) first, then all are waited for
  // together: they share group commits.
  std::vector<std::pair<size_t, std::future<Status>>> durable;
  for (size_t i = 0; i < keys.size(); ++i) {
    const Removal r = RemoveForDelete(keys[i]);
    if (r == Removal::kRemoved) out[i] = true;
    if (r != Removal::kTombstone) continue;
    const Tag t = TagOf(keys[i]);
    auto f = StartTombstone(EntryKind::kDeleteKey, keys[i], Key{}, [&] {
      std::lock_guard<std::mutex> l(mu_);
      Unpin(t);
    });
    if (f.ok()) {
      durable.emplace_back(i, std::move(*f));
    } else {
      TW_LOG(kWarn, "delete: tombstone not written; the chunk may come back after a restart",
             {{"key", keys[i].Hex()}, {"error", f.status()}});
    }
  }
  for (auto& [i, f] : durable) {
    Status s = f.get();
    out[i] = s.ok();
    if (!s.ok()) {
      TW_LOG(kWarn, "delete: tombstone not written; the chunk may come back after a restart",
             {{"key", keys[i].Hex()}, {"error", s}});
    }
  }
  return out;
}

uint64_t StoreImpl::EvictNamespace(const Key& digest) {
  uint64_t n = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = ns_ids_.find(digest);
    if (it == ns_ids_.end()) return 0;
    std::vector<Tag> tags;
    for (auto& [t, e] : index_) {
      if (e.ns == it->second && e.ready && !e.doomed) tags.push_back(t);
    }
    for (Tag t : tags) RemoveEntry(t, true);
    ns_[it->second].order.clear();
    n = tags.size();
  }
  if (nvme_ && n > 0) {
    Status s = PersistTombstone(EntryKind::kEvictNamespace, Key{}, digest, [] {});
    if (!s.ok()) {
      TW_LOG(kWarn, "evict namespace: tombstone not written; chunks may come back after a restart",
             {{"namespace", digest.Hex()}, {"error", s}});
    }
  }
  return n;
}

}  // namespace tw::store
