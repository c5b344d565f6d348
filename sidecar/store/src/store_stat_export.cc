// What the Store reports and accepts at run time: Stat (a chunk's metadata from its record
// header), Export, Namespaces, Stats, and Reconfigure.
#include <algorithm>
#include <chrono>

#include "store_impl.h"
#include "tw/common/log.h"

namespace tw::store {

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

std::optional<ChunkMeta> StoreImpl::Stat(const Key& key) { return StatTag(TagOf(key), &key); }

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

std::vector<EvictedChunk> StoreImpl::TakeEvicted(size_t max) {
  std::vector<EvictedChunk> out;
  std::lock_guard<std::mutex> l(mu_);
  if (evicted_.size() <= max) {
    out.swap(evicted_);
  } else {
    out.assign(evicted_.begin(), evicted_.begin() + static_cast<ptrdiff_t>(max));
    evicted_.erase(evicted_.begin(), evicted_.begin() + static_cast<ptrdiff_t>(max));
  }
  return out;
}

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
               TableBytes(ns_ids_) + TableBytes(ghost_);
  b += dram_objs_.capacity() * sizeof(DramObj) + free_objs_.capacity() * sizeof(uint32_t);
  b += ns_.capacity() * sizeof(Ns);
  for (const Ns& n : ns_) b += n.order.size() * sizeof(Tag);
  b += (ghost_fifo_.size() + writeback_q_.size()) * sizeof(Tag);
  b += admission_.memory_bytes();
  s.index_bytes = b;
  return s;
}

Status StoreImpl::Reconfigure(const Options& o) {
  std::lock_guard<std::mutex> l(mu_);
  opts_.quotas = o.quotas;
  opts_.default_namespace_quota = o.default_namespace_quota;
  opts_.admission = o.admission;
  admission_.Reconfigure(o.admission);
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

}  // namespace tw::store
