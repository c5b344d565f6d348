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

bool InBounds(const RecordLayout& l, std::span<const ScatterEntry> ranges) {
  for (const ScatterEntry& r : ranges) {
    if (r.segment >= l.segment_sizes.size()) return false;
    if (r.offset > l.segment_sizes[r.segment] || r.length > l.segment_sizes[r.segment] - r.offset ||
        (r.length && !r.addr)) {
      return false;
    }
  }
  return true;
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
      e.nvme_off = se.offset;
      e.record_4k = se.record_4k;
      e.header_len = se.header_len;
      e.disk = se.disk;
      e.ns = NsId(se.ns);
      e.state = State::kReady;
      index_[se.key] = e;
      ns_[e.ns].chunks++;
      ns_[e.ns].bytes += uint64_t(se.record_4k) * 4096;
    }
  }
  budget_at_ = Clock::now();
  budget_tokens_ = double(opts_.admission.write_budget);
  writeback_ = std::thread([this] { WritebackLoop(); });
  reclaim_ = std::thread([this] { ReclaimLoop(); });
  return OkStatus();
}

StoreImpl::Entry* StoreImpl::Find(const Key& key) {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &it->second;
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
  if (inserted) ns_.push_back(Ns{digest, 0, 0, QuotaFor(digest)});
  return it->second;
}

void StoreImpl::Pin(Entry& e) {
  e.pins++;
  if (e.nvme_off != kNoNvme) region_pins_[nvme_->HeadOf(e.nvme_off)]++;
}

void StoreImpl::Unpin(const Key& key) {
  Entry* e = Find(key);
  if (!e) return;
  e->pins--;
  if (e->nvme_off != kNoNvme) region_pins_[nvme_->HeadOf(e->nvme_off)]--;
  if (e->pins == 0) {
    if (e->doomed) RemoveEntry(key, false);
    cv_.notify_all();
  }
}

void StoreImpl::AddGhost(const Key& key) {
  if (ghost_.insert(key).second) {
    ghost_fifo_.push_back(key);
    if (ghost_fifo_.size() > kGhostCapacity) {
      ghost_.erase(ghost_fifo_.front());
      ghost_fifo_.pop_front();
    }
  }
}

void StoreImpl::FreeDram(Entry& e) {
  if (e.dram == kNoDram) return;
  DramObj& o = dram_objs_[e.dram];
  dram_->Remove(e.dram);
  dram_->Free(o.off, o.len);
  free_objs_.push_back(e.dram);
  e.dram = kNoDram;
}

// Removes the entry now, or (pinned) marks it doomed so the last Unpin removes it.
void StoreImpl::RemoveEntry(const Key& key, bool to_ghost) {
  auto it = index_.find(key);
  if (it == index_.end()) return;
  Entry& e = it->second;
  if (!e.doomed) {
    ns_[e.ns].chunks--;
    ns_[e.ns].bytes -= uint64_t(e.record_4k) * 4096;
  }
  if (e.pins > 0) {
    e.doomed = true;
    if (to_ghost) AddGhost(key);
    return;
  }
  FreeDram(e);
  index_.erase(it);
  if (to_ghost) AddGhost(key);
}

bool StoreImpl::Admit(const Key& key, uint64_t bytes) {
  switch (opts_.admission.policy) {
    case config::AdmissionPolicy::kAll:
      return true;
    case config::AdmissionPolicy::kSecondSight:
      if (seen_.contains(key)) return true;
      seen_.insert(key);
      seen_fifo_.push_back(key);
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
bool StoreImpl::MakeRoomInNamespace(uint32_t ns, uint64_t need) {
  Ns& n = ns_[ns];
  if (n.quota == 0 || n.bytes + need <= n.quota) return true;
  if (need > n.quota) return false;
  std::vector<Key> victims;
  uint64_t freed = 0;
  for (auto& [k, e] : index_) {
    if (n.bytes - freed + need <= n.quota) break;
    if (e.ns != ns || e.pins > 0 || e.state != State::kReady || e.doomed) continue;
    victims.push_back(k);
    freed += uint64_t(e.record_4k) * 4096;
  }
  for (const Key& k : victims) {
    Entry* e = Find(k);
    if (e && e->dram != kNoDram && e->nvme_off == kNoNvme) stats_.dropped_unwritten += e->dirty;
    RemoveEntry(k, true);
    stats_.nvme.evictions++;
  }
  return n.bytes + need <= n.quota;
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
    auto victim = dram_->PickVictim([&](uint32_t id) {
      const Entry* e = Find(dram_objs_[id].key);
      if (!e || e->pins > 0 || e->state != State::kReady) return false;
      return !e->dirty || drop_dirty;
    });
    if (victim) {
      Key k = dram_objs_[*victim].key;
      Entry* e = Find(k);
      stats_.dram.evictions++;
      if (e->nvme_off != kNoNvme) {
        FreeDram(*e);  // demoted: it stays on NVMe
      } else {
        if (e->dirty || e->unwritten) stats_.dropped_unwritten++;
        RemoveEntry(k, true);
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
    if (Entry* e = Find(info.key)) return bump(e->doomed ? PutResult::kBusy : PutResult::kExists);
    if (disk && !nvme_) return bump(PutResult::kRejectedAdmission);
    if (!dram_ && !nvme_) return bump(PutResult::kRejectedAdmission);
    uint32_t ns = NsId(info.namespace_digest);
    if (!MakeRoomInNamespace(ns, len)) return bump(PutResult::kQuota);
    bool fits_dram = dram_ && len <= dram_->capacity() / 2;
    if (!fits_dram && !nvme_) return bump(PutResult::kBusy);
    if (nvme_ && (disk || !fits_dram) && !Admit(info.key, len)) {
      return bump(PutResult::kRejectedAdmission);
    }
    // Reserve the key: other puts of it now answer `exists`.
    Entry& e = index_[info.key];
    e = Entry{};
    e.ns = ns;
    e.record_4k = uint32_t(len / 4096);
    e.header_len = uint32_t(layout.header_len);
    e.pins = 1;  // the put's own pin keeps reclaim and eviction away
    e.disk = disk;
    ns_[ns].chunks++;
    ns_[ns].bytes += len;
    if (fits_dram) {
      auto off = AllocateDram(len, req.deadline, l);
      Entry* again = Find(info.key);
      if (off) {
        use_dram = true;
        dram_off = *off;
        uint32_t id;
        if (!free_objs_.empty()) {
          id = free_objs_.back();
          free_objs_.pop_back();
        } else {
          id = uint32_t(dram_objs_.size());
          dram_objs_.push_back({});
        }
        dram_objs_[id] = DramObj{info.key, dram_off, len};
        again->dram = id;
      } else if (!disk || !nvme_) {
        again->pins = 0;
        RemoveEntry(info.key, false);
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
    auto a = WriteRecord(info.key, info, rec, rec, layout, disk, req.deadline);
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
  Entry* e = Find(info.key);
  stats_.puts_by_result[size_t(result)]++;
  if (result != PutResult::kStored) {
    e->pins--;
    if (e->nvme_off != kNoNvme) region_pins_[nvme_->HeadOf(e->nvme_off)]--;
    e->nvme_off = kNoNvme;
    RemoveEntry(info.key, false);
    return result;
  }
  e->state = State::kReady;
  Unpin(info.key);
  if (use_dram) {
    stats_.dram.bytes_written += layout.value_size;
    bool was_ghost = ghost_.erase(info.key) > 0;
    dram_->Insert(e->dram, len, was_ghost);
    if (!on_nvme && nvme_) {
      e->dirty = true;
      writeback_q_.push_back(info.key);
      work_cv_.notify_all();
    }
  } else {
    ghost_.erase(info.key);
  }
  if (on_nvme) stats_.nvme.bytes_written += layout.value_size;
  return result;
}

StatusOr<NvmeEngine::Allocation> StoreImpl::WriteRecord(const Key& key, const ChunkInfo& info,
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
    Entry* e = Find(key);
    if (!e || e->doomed) {  // deleted meanwhile: its tombstone may already be older
      nvme_->Abort(a);
      return CancelledError("entry removed during write");
    }
    disk = e->disk;
    e->nvme_off = a.offset;
    e->record_4k = uint32_t(a.length / 4096);
    e->header_len = uint32_t(layout.header_len);
    region_pins_[nvme_->HeadOf(a.offset)] += e->pins;
  }
  SummaryEntry se;
  se.key = key;
  se.ns = info.namespace_digest;
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

MissReason StoreImpl::AbsentReason(const Key& key) const {
  return ghost_.contains(key) ? MissReason::kEvicted : MissReason::kAbsent;
}

void StoreImpl::CountMiss(MissReason r) {
  stats_.dram.misses_by_reason[size_t(r)]++;
  if (nvme_) stats_.nvme.misses_by_reason[size_t(r)]++;
}

StoreImpl::ReadPlan StoreImpl::PlanRead(Entry& e) {
  ReadPlan p;
  p.record_len = uint64_t(e.record_4k) * 4096;
  p.header_len = e.header_len;
  if (e.dram != kNoDram) {
    p.tier = Tier::kDram;
    p.dram = dram_->base() + dram_objs_[e.dram].off;
    dram_->Touch(e.dram);
  } else {
    p.tier = Tier::kNvme;
    p.nvme_off = e.nvme_off;
    nvme_->Touch(e.nvme_off);
  }
  e.hit = true;
  Pin(e);
  return p;
}

GetResult StoreImpl::Get(const Key& key, std::span<const ScatterEntry> ranges, Deadline deadline,
                         LeaseId /*lease*/) {
  GetResult res;
  ReadPlan p;
  {
    std::lock_guard<std::mutex> l(mu_);
    Entry* e = Find(key);
    if (!e || e->state != State::kReady || e->doomed) {
      res.miss = AbsentReason(key);
      CountMiss(res.miss);
      return res;
    }
    if (Clock::now() >= deadline) {
      res.miss = MissReason::kDeadline;
      CountMiss(res.miss);
      return res;
    }
    p = PlanRead(*e);
  }
  uint64_t bytes = 0;
  MissReason miss = p.tier == Tier::kDram ? ReadDram(p, ranges, &bytes)
                                          : ReadNvme(key, p, ranges, deadline, &bytes);
  std::lock_guard<std::mutex> l(mu_);
  Unpin(key);
  TierStats& t = p.tier == Tier::kDram ? stats_.dram : stats_.nvme;
  if (miss == MissReason::kNone) {
    t.hits++;
    t.bytes_read += bytes;
    if (p.tier == Tier::kNvme) stats_.dram.misses_by_reason[size_t(MissReason::kAbsent)]++;
    res.tier = p.tier;
    res.bytes = bytes;
    return res;
  }
  t.misses_by_reason[size_t(miss)]++;
  if (miss == MissReason::kCorrupt) {
    t.corrupt++;
    TW_LOG(kWarn, "dropping a corrupt chunk", {{"key", key.Hex()}, {"tier", ToString(p.tier)}});
    RemoveEntry(key, false);
  } else if (miss == MissReason::kIoError) {
    t.io_errors++;
  }
  res.miss = miss;
  return res;
}

StatusOr<RecordHeader> StoreImpl::ReadHeader(const ReadPlan& p) {
  if (p.tier == Tier::kDram) return DecodeHeader(p.dram, p.header_len);
  AlignedBuffer hb(p.header_len, false);
  if (!hb.data()) return ResourceExhaustedError("out of memory");
  TW_RETURN_IF_ERROR(nvme_->Read(p.nvme_off, hb.data(), p.header_len));
  return DecodeHeader(hb.data(), p.header_len);
}

MissReason StoreImpl::ReadDram(const ReadPlan& p, std::span<const ScatterEntry> ranges,
                               uint64_t* bytes) {
  auto h = DecodeHeader(p.dram, p.header_len);
  if (!h.ok()) return MissReason::kCorrupt;
  RecordLayout l = ComputeLayout(h->header_len, h->info.segment_sizes);
  if (!InBounds(l, ranges)) return MissReason::kIoError;
  for (const ScatterEntry& r : ranges) {
    CopyLarge(r.addr, p.dram + l.segment_offsets[r.segment] + r.offset, r.length);
    *bytes += r.length;
  }
  return MissReason::kNone;
}

MissReason StoreImpl::ReadNvme(const Key& key, const ReadPlan& p,
                               std::span<const ScatterEntry> ranges, Deadline deadline,
                               uint64_t* bytes) {
  auto h = ReadHeader(p);
  if (!h.ok()) {
    return h.status().code() == StatusCode::kDataLoss ||
                   h.status().code() == StatusCode::kFailedPrecondition
               ? MissReason::kCorrupt
               : MissReason::kIoError;
  }
  if (h->info.key != key) return MissReason::kCorrupt;
  RecordLayout l = ComputeLayout(h->header_len, h->info.segment_sizes);
  if (l.record_len != p.record_len) return MissReason::kCorrupt;
  if (!InBounds(l, ranges)) return MissReason::kIoError;
  // Every touched segment is read whole (its CRC covers all of it): straight into the
  // caller's memory when one aligned range asks for the whole 4 KiB-multiple segment, else
  // through a bounce buffer.
  std::vector<int> direct(l.segment_sizes.size(), -1);
  std::vector<bool> touched(l.segment_sizes.size(), false);
  for (size_t i = 0; i < ranges.size(); ++i) {
    const ScatterEntry& r = ranges[i];
    if (r.length == 0) continue;
    touched[r.segment] = true;
    uint64_t sz = l.segment_sizes[r.segment];
    if (r.offset == 0 && r.length == sz && sz % kIoAlign == 0 &&
        reinterpret_cast<uintptr_t>(r.addr) % kIoAlign == 0 && direct[r.segment] == -1) {
      direct[r.segment] = int(i);
    }
  }
  uint64_t bounce_len = 0;
  std::vector<uint64_t> bounce_at(l.segment_sizes.size(), 0);
  for (size_t s = 0; s < touched.size(); ++s) {
    if (touched[s] && direct[s] < 0) {
      bounce_at[s] = bounce_len;
      bounce_len += AlignUp(l.segment_sizes[s], kIoAlign);
    }
  }
  AlignedBuffer bounce(bounce_len, false);
  if (bounce_len && !bounce.data()) return MissReason::kIoError;
  std::vector<VolumeIo> ios;
  for (size_t s = 0; s < touched.size(); ++s) {
    if (!touched[s]) continue;
    uint64_t padded = AlignUp(l.segment_sizes[s], kIoAlign);
    if (padded == 0) continue;
    void* dst = direct[s] >= 0 ? ranges[size_t(direct[s])].addr : bounce.data() + bounce_at[s];
    ios.push_back({p.nvme_off + l.segment_offsets[s], padded, dst});
  }
  Status st = nvme_->Read(ios);
  if (!st.ok()) return MissReason::kIoError;
  for (size_t s = 0; s < touched.size(); ++s) {
    if (!touched[s]) continue;
    const uint8_t* src = direct[s] >= 0
                             ? static_cast<const uint8_t*>(ranges[size_t(direct[s])].addr)
                             : bounce.data() + bounce_at[s];
    if (Crc32c(src, l.segment_sizes[s]) != h->segment_crcs[s]) return MissReason::kCorrupt;
  }
  for (size_t i = 0; i < ranges.size(); ++i) {
    const ScatterEntry& r = ranges[i];
    if (r.length && direct[r.segment] != int(i)) {
      CopyLarge(r.addr, bounce.data() + bounce_at[r.segment] + r.offset, r.length);
    }
    *bytes += r.length;
  }
  // The I/O is complete, so a late answer never lands in memory the caller reuses.
  if (Clock::now() > deadline) return MissReason::kDeadline;
  return MissReason::kNone;
}

}  // namespace tw::store
