// The Store's catalogue operations: lookup and leases, stat, delete, namespaces, export,
// stats and reconfiguration.
#include <chrono>

#include "store_impl.h"
#include "tw/common/log.h"

namespace tw::store {

LookupResult StoreImpl::Lookup(std::span<const Key> chain, bool take_lease) {
  LookupResult r;
  std::lock_guard<std::mutex> l(mu_);
  ExpireLeases();
  std::vector<Key> pinned;
  for (const Key& k : chain) {
    Entry* e = Find(k);
    if (!e || e->state != State::kReady || e->doomed) {
      r.miss = AbsentReason(k);
      break;
    }
    r.tiers.push_back(e->dram != kNoDram ? Tier::kDram : Tier::kNvme);
    e->hit = true;
    if (take_lease) {
      Pin(*e);
      pinned.push_back(k);
    }
  }
  r.prefix = r.tiers.size();
  // A hit on chunk j is a hit on each of its ancestors. They are touched deepest first, so the
  // ancestors end up the most recently used: under pressure, descendants go before the
  // ancestors they cannot be reached without.
  for (size_t i = r.prefix; i-- > 0;) {
    Entry* e = Find(chain[i]);
    if (e->dram != kNoDram) dram_->Touch(e->dram);
    if (e->nvme_off != kNoNvme) nvme_->Touch(e->nvme_off);
  }
  if (take_lease && !pinned.empty()) {
    r.lease = next_lease_++;
    leases_[r.lease] = Lease{Clock::now() + opts_.lease_duration, std::move(pinned)};
  }
  return r;
}

void StoreImpl::ReleaseLease(LeaseId lease) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = leases_.find(lease);
  if (it == leases_.end()) return;
  for (const Key& k : it->second.keys) Unpin(k);
  leases_.erase(it);
}

void StoreImpl::ExpireLeases() {
  auto now = Clock::now();
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.expiry > now) {
      ++it;
      continue;
    }
    for (const Key& k : it->second.keys) Unpin(k);
    it = leases_.erase(it);
  }
}

std::optional<ChunkMeta> StoreImpl::Stat(const Key& key) {
  ReadPlan p;
  {
    std::lock_guard<std::mutex> l(mu_);
    Entry* e = Find(key);
    if (!e || e->state != State::kReady || e->doomed) return std::nullopt;
    p = PlanRead(*e);
  }
  auto h = ReadHeader(p);
  std::lock_guard<std::mutex> l(mu_);
  Unpin(key);
  if (!h.ok()) return std::nullopt;
  ChunkMeta m;
  m.info = std::move(h->info);
  m.value_size = 0;
  for (uint64_t s : m.info.segment_sizes) m.value_size += s;
  m.tier = p.tier;
  m.created_unix_ms = h->created_unix_ms;
  m.last_access_unix_ms = m.created_unix_ms;  // last access is not tracked per chunk
  return m;
}

Status StoreImpl::PersistTombstone(EntryKind kind, const Key& key, const Key& ns,
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
      return nvme_->Commit(*a, t, /*wait=*/true);
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

bool StoreImpl::Delete(const Key& key) {
  {
    std::lock_guard<std::mutex> l(mu_);
    Entry* e = Find(key);
    if (!e || e->state != State::kReady || e->doomed) return false;
    if (!nvme_) {
      RemoveEntry(key, false);
      return true;
    }
    // Pinned and doomed: a put of the key answers `busy` until the tombstone has its sequence
    // number, so a put after the delete always orders after it.
    Pin(*e);
    RemoveEntry(key, false);
  }
  Status s = PersistTombstone(EntryKind::kDeleteKey, key, Key{}, [&] {
    std::lock_guard<std::mutex> l(mu_);
    Unpin(key);
  });
  if (!s.ok()) {
    TW_LOG(kWarn, "delete: tombstone not written; the chunk may come back after a restart",
           {{"key", key.Hex()}, {"error", s}});
  }
  return s.ok();
}

uint64_t StoreImpl::EvictNamespace(const Key& digest) {
  std::vector<Key> keys;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = ns_ids_.find(digest);
    if (it == ns_ids_.end()) return 0;
    for (auto& [k, e] : index_) {
      if (e.ns == it->second && e.state == State::kReady && !e.doomed) keys.push_back(k);
    }
    for (const Key& k : keys) RemoveEntry(k, true);
  }
  if (nvme_ && !keys.empty()) {
    Status s = PersistTombstone(EntryKind::kEvictNamespace, Key{}, digest, [] {});
    if (!s.ok()) {
      TW_LOG(kWarn, "evict namespace: tombstone not written; chunks may come back after a restart",
             {{"namespace", digest.Hex()}, {"error", s}});
    }
  }
  return keys.size();
}

std::vector<NamespaceUsage> StoreImpl::Namespaces() {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<NamespaceUsage> out;
  for (const Ns& n : ns_) {
    if (n.chunks == 0 && n.quota == 0) continue;
    out.push_back({n.digest, n.chunks, n.bytes, n.quota});
  }
  return out;
}

void StoreImpl::Export(const std::function<bool(const ChunkMeta&)>& fn) {
  std::vector<Key> keys;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [k, e] : index_) {
      if (e.state == State::kReady && !e.doomed) keys.push_back(k);
    }
  }
  for (const Key& k : keys) {
    auto m = Stat(k);
    if (m && !fn(*m)) return;
  }
}

StoreStats StoreImpl::Stats() {
  std::lock_guard<std::mutex> l(mu_);
  StoreStats s = stats_;
  uint64_t dram_chunks = 0, nvme_chunks = 0, nvme_used = 0;
  for (auto& [k, e] : index_) {
    if (e.doomed || e.state != State::kReady) continue;
    dram_chunks += e.dram != kNoDram;
    if (e.nvme_off != kNoNvme) {
      nvme_chunks++;
      nvme_used += uint64_t(e.record_4k) * 4096;
    }
  }
  if (dram_) {
    s.dram.used_bytes = dram_->used();
    s.dram.capacity_bytes = dram_->capacity();
    s.dram.chunks = dram_chunks;
  }
  if (nvme_) {
    auto c = nvme_->counters();
    s.nvme.capacity_bytes = c.capacity;
    s.nvme.used_bytes = nvme_used;
    s.nvme.chunks = nvme_chunks;
    s.nvme.io_errors += c.io_errors;
  }
  s.index_bytes = index_.capacity() * (sizeof(Key) + sizeof(Entry) + 1) +
                  dram_objs_.capacity() * sizeof(DramObj);
  return s;
}

Status StoreImpl::Reconfigure(const StoreOptions& o) {
  std::lock_guard<std::mutex> l(mu_);
  opts_.quotas = o.quotas;
  opts_.default_namespace_quota = o.default_namespace_quota;
  opts_.admission = o.admission;
  opts_.lease_duration = o.lease_duration;
  for (Ns& n : ns_) n.quota = QuotaFor(n.digest);
  return OkStatus();
}

uint64_t StoreImpl::nvme_bytes_read() { return nvme_ ? nvme_->counters().bytes_read : 0; }

}  // namespace tw::store
