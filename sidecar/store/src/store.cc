// The Store facade: open, put, get, lookup, leases, namespaces. Background work (write-back,
// reclaim, close) lives in store_background.cc.
#include <algorithm>
#include <chrono>
#include <cstring>

#include "aligned_buffer.h"
#include "fast_copy.h"
#include "store_impl.h"
#include "tw/common/crc32c.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"

namespace tw::store {
namespace {

constexpr size_t kGhostCapacity = 1 << 16;
constexpr size_t kSeenCapacity = 1 << 16;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Checks that `data` covers every byte of every segment exactly once.
bool CoversExactly(const std::vector<uint64_t>& sizes, std::vector<ScatterEntry> data) {
  std::sort(data.begin(), data.end(), [](const ScatterEntry& a, const ScatterEntry& b) {
    return a.segment != b.segment ? a.segment < b.segment : a.offset < b.offset;
  });
  size_t i = 0;
  for (uint32_t s = 0; s < sizes.size(); ++s) {
    uint64_t at = 0;
    while (i < data.size() && data[i].segment == s) {
      if (data[i].offset != at || (data[i].length > 0 && !data[i].addr)) return false;
      at += data[i].length;
      ++i;
    }
    if (at != sizes[s]) return false;
  }
  return i == data.size();
}

}  // namespace

StoreOptions StoreOptions::FromConfig(const config::Config& c) {
  StoreOptions o;
  o.dram = c.dram;
  o.nvme = c.nvme;
  o.admission = c.admission;
  o.quotas = c.quotas;
  o.default_namespace_quota = c.default_namespace_quota;
  o.lease_duration = c.leases.duration;
  return o;
}

StatusOr<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  return StoreImpl::Create(options);
}

StoreImpl::StoreImpl(const StoreOptions& o) : opts_(o) {}

StatusOr<std::unique_ptr<Store>> StoreImpl::Create(const StoreOptions& options) {
  std::unique_ptr<StoreImpl> s(new StoreImpl(options));
  TW_RETURN_IF_ERROR(s->Init());
  return std::unique_ptr<Store>(std::move(s));
}

Status StoreImpl::Init() {
  if (opts_.dram.capacity > 0) {
    DramTier::Options d;
    d.capacity = opts_.dram.capacity;
    d.hugepages = opts_.dram.hugepages;
    d.pinned = opts_.dram.pinned;
    d.eviction = opts_.dram.eviction;
    TW_ASSIGN_OR_RETURN(dram_, DramTier::Create(d));
  }
  if (!opts_.nvme.paths.empty()) {
    NvmeEngine::Options n;
    n.config = opts_.nvme;
    n.factory = opts_.device_factory ? opts_.device_factory : MakeUringDeviceFactory();
    n.on_lost = [this](const SummaryEntry& e) { OnLost(e); };
    std::vector<SummaryEntry> recovered;
    TW_ASSIGN_OR_RETURN(nvme_, NvmeEngine::Open(n, &recovered));
    if (nvme_->region_count() > 0 &&
        uint64_t(nvme_->region_count()) * nvme_->region_size() / 4096 >= kNoNvme4k) {
      return InvalidArgumentError("NVMe logical space above 1 PiB: the index cannot address it");
    }
    // A pinned arena is also registered with io_uring: write-back and demotion then write
    // from it without pinning its pages per request.
    if (dram_ && dram_->pinned()) {
      for (size_t i = 0; i < nvme_->volume().device_count(); ++i) {
        nvme_->volume().device(i).RegisterMemory(dram_->base(), dram_->capacity());
      }
    }
    region_pins_.assign(nvme_->region_count(), 0);
    std::lock_guard<std::mutex> l(mu_);
    index_.reserve(recovered.size());
    for (const SummaryEntry& se : recovered) {
      Entry e;
      e.set_nvme_off(se.offset);
      e.record_4k = se.record_4k;
      e.header_4k = se.header_len / 4096;
      e.disk = se.disk;
      e.ns = NsId(se.ns);
      e.ready = true;
      e.parent = se.parent_tag == TagOf(se.ns) ? 0 : se.parent_tag;
      // Two keys with one tag: the first one recovered is kept, the other is a miss.
      if (!index_.try_emplace(TagOf(se.key), e).second) continue;
      ns_[e.ns].chunks++;
      ns_[e.ns].bytes += uint64_t(se.record_4k) * 4096;
    }
    for (auto& [t, e] : index_) {
      if (e.parent == 0) continue;
      if (Entry* p = Find(e.parent)) {
        if (p->children < kChildrenSticky) p->children++;
        e.counted = true;
      }
    }
    for (uint32_t i = 0; i < ns_.size(); ++i) {
      if (ns_[i].quota > 0) RebuildOrder(i);
    }
  }
  budget_at_ = Clock::now();
  budget_tokens_ = double(opts_.admission.write_budget);
  writeback_ = std::thread([this] { WritebackLoop(); });
  reclaim_ = std::thread([this] { ReclaimLoop(); });
  return OkStatus();
}

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

void StoreImpl::AttachDram(Tag tag, Entry& e, const Key& key, uint64_t off, uint64_t len) {
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

bool StoreImpl::Admit(Tag tag, uint64_t bytes) {
  switch (opts_.admission.policy) {
    case config::AdmissionPolicy::kAll:
      return true;
    case config::AdmissionPolicy::kSecondSight:
      if (seen_.contains(tag)) return true;
      seen_.insert(tag);
      seen_fifo_.push_back(tag);
      if (seen_fifo_.size() > kSeenCapacity) {
        seen_.erase(seen_fifo_.front());
        seen_fifo_.pop_front();
      }
      return false;
    case config::AdmissionPolicy::kWriteBudget: {
      auto now = Clock::now();
      double rate = double(opts_.admission.write_budget);
      budget_tokens_ = std::min(
          rate, budget_tokens_ + rate * std::chrono::duration<double>(now - budget_at_).count());
      budget_at_ = now;
      if (budget_tokens_ < double(bytes)) return false;
      budget_tokens_ -= double(bytes);
      return true;
    }
  }
  return true;
}

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

PutResult StoreImpl::Put(const PutRequest& req) {
  const ChunkInfo& info = req.chunk;
  auto answer = [&](PutResult r) {
    std::lock_guard<std::mutex> l(mu_);
    stats_.puts_by_result[size_t(r)]++;
    return r;
  };
  if (info.segment_sizes.size() > (1u << 16) || !CoversExactly(info.segment_sizes, req.data)) {
    TW_LOG(kWarn, "put: scatter list does not cover the segments exactly once",
           {{"key", info.key.Hex()}});
    return answer(PutResult::kInvalid);
  }
  const RecordLayout layout = ComputeLayout(info);
  const uint64_t len = layout.record_len;
  const bool disk = req.durability == Durability::kDisk;
  const Tag tag = TagOf(info.key);
  if (len / 4096 > kMaxRecord4k || layout.header_len / 4096 > kMaxHeader4k) {
    TW_LOG(kWarn, "put: record too large for the index",
           {{"key", info.key.Hex()}, {"record_bytes", len}});
    return answer(PutResult::kInvalid);
  }
  bool use_dram = false;
  uint64_t dram_off = 0;
  {
    std::unique_lock<std::mutex> l(mu_);
    ExpireLeases();
    auto bump = [&](PutResult r) {
      stats_.puts_by_result[size_t(r)]++;
      return r;
    };
    if (closing_) return bump(PutResult::kBusy);
    // A stored key answers `exists`; so does, with probability ~n/2^64, a key whose 8-byte
    // tag another stored key has (its reads then miss: every read verifies the full key).
    if (Entry* e = Find(tag)) return bump(e->doomed ? PutResult::kBusy : PutResult::kExists);
    if (disk && !nvme_) return bump(PutResult::kRejectedAdmission);
    if (!dram_ && !nvme_) return bump(PutResult::kRejectedAdmission);
    if (ns_.size() >= kMaxNamespaces && !ns_ids_.contains(info.namespace_digest)) {
      return bump(PutResult::kBusy);
    }
    uint32_t ns = NsId(info.namespace_digest);
    if (!MakeRoomInNamespace(ns, len)) return bump(PutResult::kQuota);
    bool fits_dram = dram_ && len <= dram_->capacity() / 2;
    if (!fits_dram && !nvme_) return bump(PutResult::kBusy);
    if (nvme_ && (disk || !fits_dram) && !Admit(tag, len)) {
      return bump(PutResult::kRejectedAdmission);
    }
    // Reserve the key: other puts of it now answer `exists`.
    Entry& e = index_[tag];
    e = Entry{};
    e.ns = ns;
    e.record_4k = len / 4096;
    e.header_4k = layout.header_len / 4096;
    if (info.parent != info.namespace_digest) {
      e.parent = TagOf(info.parent);
      if (Entry* p = Find(e.parent); p && !p->doomed) {
        if (p->children < kChildrenSticky) p->children++;
        e.counted = true;
      }
    }
    Pin(tag, e);  // the put's own pin keeps reclaim and eviction away
    e.disk = disk;
    ns_[ns].chunks++;
    ns_[ns].bytes += len;
    NoteInNamespace(ns, tag);
    if (fits_dram) {
      auto off = AllocateDram(len, req.deadline, l);
      Entry* again = Find(tag);
      if (off) {
        use_dram = true;
        dram_off = *off;
        AttachDram(tag, *again, info.key, dram_off, len);
      } else if (!disk || !nvme_) {
        Unpin(tag);
        RemoveEntry(tag, false);
        return bump(PutResult::kBusy);
      }
    }
  }
  // Fill the record: header, then each scatter range at its segment's offset.
  AlignedBuffer bounce;
  uint8_t* rec;
  if (use_dram) {
    rec = dram_->base() + dram_off;
  } else {
    bounce = AlignedBuffer(len, false);
    rec = bounce.data();
  }
  PutResult result = PutResult::kStored;
  if (!rec) {
    result = PutResult::kBusy;
  } else {
    const bool to_nvme_now = disk || !use_dram;
    std::vector<uint32_t> crcs;
    if (to_nvme_now) {
      // Copy segment by segment and checksum each while it is still in cache.
      std::vector<const ScatterEntry*> order;
      for (const ScatterEntry& s : req.data) order.push_back(&s);
      std::sort(order.begin(), order.end(), [](const ScatterEntry* a, const ScatterEntry* b) {
        return a->segment != b->segment ? a->segment < b->segment : a->offset < b->offset;
      });
      crcs.assign(info.segment_sizes.size(), 0);
      for (const ScatterEntry* s : order) {
        uint8_t* dst = rec + layout.segment_offsets[s->segment] + s->offset;
        if (s->length == 0) continue;
        std::memcpy(dst, s->addr, s->length);
        crcs[s->segment] = Crc32c(dst, s->length, crcs[s->segment]);
      }
    } else {
      for (const ScatterEntry& s : req.data) {
        CopyLarge(rec + layout.segment_offsets[s.segment] + s.offset, s.addr, s.length);
      }
    }
    EncodeHeader(info, layout, 0, NowMs(), crcs, rec);
  }
  bool on_nvme = false;
  if (result == PutResult::kStored && (disk || !use_dram)) {
    auto a = WriteRecord(tag, info, rec, rec, layout, disk, req.deadline);
    if (!a.ok()) {
      result = a.status().code() == StatusCode::kResourceExhausted ||
                       a.status().code() == StatusCode::kDeadlineExceeded
                   ? PutResult::kBusy
                   : PutResult::kIoError;
    } else {
      on_nvme = true;
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  Entry* e = Find(tag);
  stats_.puts_by_result[size_t(result)]++;
  if (result != PutResult::kStored) {
    if (e->on_nvme()) region_pins_[nvme_->HeadOf(e->nvme_off())] -= Pins(tag);
    e->set_nvme_off(kNoNvme);
    Unpin(tag);
    RemoveEntry(tag, false);
    return result;
  }
  e->ready = true;
  Unpin(tag);
  if (use_dram) {
    stats_.dram.bytes_written += layout.value_size;
    bool was_ghost = ghost_.erase(tag) > 0;
    dram_->Insert(DramId(tag), len, was_ghost);
    if (!on_nvme && nvme_) {
      e->dirty = true;
      writeback_q_.push_back(tag);
      work_cv_.notify_all();
    }
  } else {
    ghost_.erase(tag);
  }
  if (on_nvme) stats_.nvme.bytes_written += layout.value_size;
  return result;
}

StatusOr<NvmeEngine::Allocation> StoreImpl::WriteRecord(Tag tag, const ChunkInfo& info,
                                                        uint8_t* header, const uint8_t* record,
                                                        const RecordLayout& layout, bool wait,
                                                        Deadline deadline) {
  NvmeEngine::Allocation a;
  while (true) {
    auto r = nvme_->Allocate(layout.record_len);
    if (r.ok()) {
      a = *r;
      break;
    }
    if (r.status().code() != StatusCode::kResourceExhausted) return r.status();
    std::unique_lock<std::mutex> l(mu_);
    reclaim_wanted_ = true;
    work_cv_.notify_all();
    auto now = Clock::now();
    if (now >= deadline || stop_) return DeadlineExceededError("no NVMe space before deadline");
    cv_.wait_until(l, std::min(deadline, now + std::chrono::milliseconds(20)));
  }
  SetHeaderSeq(header, a.seq);
  Status s = nvme_->Write(a, header, layout.header_len, record + layout.header_len);
  if (!s.ok()) {
    nvme_->Abort(a);
    return s;
  }
  bool disk = false;
  {
    // The location is set before the commit, so a region sealed right after the commit is
    // never reclaimed without this entry being dropped with it.
    std::lock_guard<std::mutex> l(mu_);
    Entry* e = Find(tag);
    // Deleted meanwhile (its tombstone may already be older), or removed and put again.
    if (!e || e->doomed || e->on_nvme()) {
      nvme_->Abort(a);
      return CancelledError("entry removed during write");
    }
    disk = e->disk;
    e->set_nvme_off(a.offset);
    e->record_4k = a.length / 4096;
    e->header_4k = layout.header_len / 4096;
    region_pins_[nvme_->HeadOf(a.offset)] += Pins(tag);
  }
  SummaryEntry se;
  se.key = info.key;
  se.ns = info.namespace_digest;
  se.parent_tag = TagOf(info.parent);
  se.offset = a.offset;
  se.region = a.region;
  se.seq = a.seq;
  se.epoch = a.epoch;
  se.record_4k = uint32_t(a.length / 4096);
  se.header_len = uint32_t(layout.header_len);
  se.disk = disk;
  s = nvme_->Commit(a, se, wait);
  if (!s.ok()) return s;
  return a;
}

}  // namespace tw::store
