// The Store's catalogue operations: lookup and leases, stat, delete, namespaces, export,
// stats and reconfiguration.
#include <algorithm>
#include <chrono>

#include "store_impl.h"
#include "tw/common/log.h"

namespace tw::store {

LookupResult StoreImpl::Lookup(std::span<const Key> chain, bool take_lease) {
  LookupResult r;
  std::lock_guard<std::mutex> l(mu_);
  ExpireLeases();
  std::vector<Tag> pinned;
  // The DRAM object ids and NVMe offsets of the found chunks, in chain order. (Nothing is
  // inserted into the index below, so no lookup is repeated.)
  std::vector<uint32_t> dram_ids;
  std::vector<uint64_t> nvme_offs;
  r.tiers.reserve(chain.size());
  dram_ids.reserve(chain.size());
  nvme_offs.reserve(chain.size());
  // By tag, and by full key for chunks in DRAM; the full key of a chunk only on NVMe is
  // verified when its bytes are served (a tag collision, ~n/2^64 per key, can make a lookup
  // report a chunk whose get then misses).
  // The index slots of a long chain are scattered over the table: ask for a few keys ahead.
  constexpr size_t kPrefetchAhead = 8;
  for (size_t i = 0; i < std::min(kPrefetchAhead, chain.size()); ++i) {
    index_.prefetch(TagOf(chain[i]));
  }
  for (size_t i = 0; i < chain.size(); ++i) {
    const Key& k = chain[i];
    if (i + kPrefetchAhead < chain.size()) index_.prefetch(TagOf(chain[i + kPrefetchAhead]));
    const Tag t = TagOf(k);
    Entry* e = Find(t);
    if (!e || !e->ready || e->doomed) {
      r.miss = AbsentReason(t);
      break;
    }
    if (e->in_dram) {
      const uint32_t id = DramId(t);
      if (dram_objs_[id].key != k) {
        r.miss = MissReason::kAbsent;
        break;
      }
      dram_ids.push_back(id);
    }
    if (e->on_nvme()) nvme_offs.push_back(e->nvme_off());
    r.tiers.push_back(e->in_dram ? Tier::kDram : Tier::kNvme);
    e->hit = true;
    e->qref = true;
    if (take_lease) {
      Pin(t, *e);
      pinned.push_back(t);
    }
  }
  r.prefix = r.tiers.size();
  // A hit on chunk j is a hit on each of its ancestors. They are touched deepest first, so the
  // ancestors end up the most recently used: under pressure, descendants go before the
  // ancestors they cannot be reached without.
  for (size_t i = dram_ids.size(); i-- > 0;) dram_->Touch(dram_ids[i]);
  if (!nvme_offs.empty()) {
    std::reverse(nvme_offs.begin(), nvme_offs.end());
    nvme_->Touch(nvme_offs);
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
  for (Tag t : it->second.tags) Unpin(t);
  leases_.erase(it);
}

void StoreImpl::ExpireLeases() {
  auto now = Clock::now();
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.expiry > now) {
      ++it;
      continue;
    }
    for (Tag t : it->second.tags) Unpin(t);
    it = leases_.erase(it);
  }
}

std::optional<ChunkMeta> StoreImpl::StatTag(Tag tag, const Key* expect) {
  ReadPlan p;
  {
    std::lock_guard<std::mutex> l(mu_);
    Entry* e = Find(tag);
    if (!e || !e->ready || e->doomed) return std::nullopt;
    p.record_len = e->record_len();
    p.header_len = e->header_len();
    if (e->in_dram) {
      p.tier = Tier::kDram;
      p.dram = dram_->base() + dram_objs_[DramId(tag)].off;
    } else {
      p.tier = Tier::kNvme;
      p.nvme_off = e->nvme_off();
    }
    Pin(tag, *e);
  }
  auto h = ReadHeader(p);
  std::lock_guard<std::mutex> l(mu_);
  Unpin(tag);
  if (!h.ok() || TagOf(h->info.key) != tag || (expect && h->info.key != *expect)) {
    return std::nullopt;
  }
  ChunkMeta m;
  m.info = std::move(h->info);
  m.value_size = 0;
  for (uint64_t s : m.info.segment_sizes) m.value_size += s;
  m.tier = p.tier;
  m.created_unix_ms = h->created_unix_ms;
  m.last_access_unix_ms = m.created_unix_ms;  // last access is not tracked per chunk
  return m;
}

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

std::optional<ChunkMeta> StoreImpl::Stat(const Key& key) { return StatTag(TagOf(key), &key); }

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
  std::vector<Tag> tags;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [t, e] : index_) {
      if (e.ready && !e.doomed) tags.push_back(t);
    }
  }
  // Full keys, token ids and the rest come from the record headers.
  for (Tag t : tags) {
    auto m = StatTag(t, nullptr);
    if (m && !fn(*m)) return;
  }
}

namespace {

// Bytes of an absl::flat_hash_{map,set} of `capacity` slots of `slot` bytes: the slots, one
// control byte per slot plus a group's worth of cloned control bytes, and a growth counter.
template <typename Table>
uint64_t TableBytes(const Table& t) {
  const uint64_t cap = t.capacity();
  if (cap == 0) return 0;
  return cap * (sizeof(typename Table::slot_type) + 1) + 16 + sizeof(size_t);
}

}  // namespace

StoreStats StoreImpl::Stats() {
  std::lock_guard<std::mutex> l(mu_);
  StoreStats s = stats_;
  uint64_t dram_chunks = 0, nvme_chunks = 0, nvme_used = 0;
  for (auto& [t, e] : index_) {
    if (e.doomed || !e.ready) continue;
    dram_chunks += e.in_dram;
    if (e.on_nvme()) {
      nvme_chunks++;
      nvme_used += e.record_len();
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
  // Everything the index keeps per chunk or per key: the table at its real capacity, the
  // side tables, the DRAM objects, namespaces with their quota order, the ghost and
  // admission sets with their FIFOs, and the write-back queue.
  uint64_t b = TableBytes(index_) + TableBytes(dram_ids_) + TableBytes(pins_) +
               TableBytes(ns_ids_) + TableBytes(ghost_) + TableBytes(seen_);
  b += dram_objs_.capacity() * sizeof(DramObj) + free_objs_.capacity() * sizeof(uint32_t);
  b += ns_.capacity() * sizeof(Ns);
  for (const Ns& n : ns_) b += n.order.size() * sizeof(Tag);
  b += (ghost_fifo_.size() + seen_fifo_.size() + writeback_q_.size()) * sizeof(Tag);
  s.index_bytes = b;
  return s;
}

Status StoreImpl::Reconfigure(const StoreOptions& o) {
  std::lock_guard<std::mutex> l(mu_);
  opts_.quotas = o.quotas;
  opts_.default_namespace_quota = o.default_namespace_quota;
  opts_.admission = o.admission;
  opts_.lease_duration = o.lease_duration;
  for (uint32_t i = 0; i < ns_.size(); ++i) {
    Ns& n = ns_[i];
    const uint64_t was = n.quota;
    n.quota = QuotaFor(n.digest);
    if (n.quota == 0) {
      n.order.clear();
    } else if (was == 0) {
      RebuildOrder(i);
    }
  }
  return OkStatus();
}

uint64_t StoreImpl::nvme_bytes_read() { return nvme_ ? nvme_->counters().bytes_read : 0; }

}  // namespace tw::store
