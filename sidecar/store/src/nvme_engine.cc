// NvmeEngine: allocation, region runs, group commit, seal scheduling, reclaim support.
// Opening, formatting and recovery are in nvme_open_recover.cc; sealing and checkpoints in
// nvme_seal_checkpoint.cc.
#include "nvme_engine.h"

#include <algorithm>
#include <chrono>

#include "aligned_buffer.h"
#include "record_format.h"
#include "tw/common/crc32c.h"
#include "tw/common/keys.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"

namespace tw::store {
namespace {

// Longest run a region may grow into (bounds the unit of reclaim).
constexpr uint32_t kMaxRunRegions = 4;

}  // namespace

NvmeEngine::~NvmeEngine() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (committer_.joinable()) committer_.join();
}

void NvmeEngine::CloseOpenLocked() {
  if (open_ < 0) return;
  regions_[size_t(open_)].state = RState::kClosing;
  open_ = -1;
  cv_.notify_all();
}

StatusOr<NvmeEngine::Allocation> NvmeEngine::Allocate(uint64_t length) {
  if (length == 0 || length % kBlock != 0) return InvalidArgumentError("bad record length");
  return AllocateImpl(length);
}

int64_t NvmeEngine::PickRunStartLocked(uint32_t span) const {
  const uint32_t n = sb_.region_count;
  int64_t best = -1;
  uint32_t best_score = 0;
  // stretch = usable regions from r on; computed right to left.
  uint32_t stretch = 0;
  for (uint32_t r = n; r-- > 0;) {
    stretch = Usable(regions_[r].state) ? stretch + 1 : 0;
    if (stretch < span) continue;
    // Room to grow counts first (up to a full run), then a prepared head (no I/O to open).
    uint32_t score = std::min(stretch, std::max(span, kMaxRunRegions)) * 2 +
                     (span == 1 && regions_[r].state == RState::kPrepared ? 1 : 0);
    if (score >= best_score) {  // ties: the lowest region
      best_score = score;
      best = r;
    }
  }
  return best;
}

uint64_t NvmeEngine::OldestLiveEpochLocked(uint32_t except) const {
  const uint32_t except_end = except + regions_[except].span;
  uint64_t oldest = UINT64_MAX;
  for (uint32_t r = 0; r < regions_.size(); ++r) {
    const Region& R = regions_[r];
    if (r >= except && r < except_end) continue;
    bool holds =
        R.state == RState::kSealed || R.state == RState::kClosing || R.state == RState::kOpen;
    if (holds) oldest = std::min(oldest, R.epoch);
  }
  return oldest;
}

StatusOr<NvmeEngine::Allocation> NvmeEngine::AllocateImpl(uint64_t length, bool reclaim) {
  std::lock_guard<std::mutex> al(alloc_mu_);
  return AllocateAllocLocked(length, reclaim);
}

uint32_t NvmeEngine::UsableLocked() const {
  uint32_t n = 0;
  for (const Region& r : regions_) n += Usable(r.state);
  return n;
}

StatusOr<NvmeEngine::Allocation> NvmeEngine::AllocateAllocLocked(uint64_t length, bool reclaim) {
  const uint64_t rs = sb_.region_size;
  std::unique_lock<std::mutex> l(mu_);
  if (stop_) return CancelledError("store closing");
  for (int attempt = 0; attempt < 2;) {
    if (open_ >= 0) {
      Region& R = regions_[size_t(open_)];
      if (R.reserved < sb_.max_entries && R.write_off + length <= uint64_t(R.span) * rs) {
        Allocation a;
        a.region = uint32_t(open_);
        a.offset = uint64_t(open_) * rs + R.write_off;
        a.length = length;
        a.epoch = R.epoch;
        a.seq = ++seq_;
        R.write_off += length;
        R.reserved++;
        R.inflight++;
        if (uint64_t(R.span) * rs - R.write_off < 2 * kBlock || R.reserved >= sb_.max_entries) {
          CloseOpenLocked();
        }
        return a;
      }
      // Extend the run over the free regions right after it when closing it would waste a
      // sizeable tail (large records); small records just start a new region.
      const uint64_t tail = uint64_t(R.span) * rs - R.write_off;
      const uint64_t beyond = R.write_off + length - uint64_t(R.span) * rs;
      const uint32_t extra = uint32_t((beyond + rs - 1) / rs);
      const uint32_t next = uint32_t(open_) + R.span;
      bool extend = tail >= rs / 8 && R.reserved < sb_.max_entries &&
                    R.span + extra <= kMaxRunRegions && next + extra <= sb_.region_count;
      bool prepared = true;
      // Growing the run takes free regions too: never the reserve, unless for reclaim.
      extend = extend && (reclaim || UsableLocked() >= extra + kReclaimReserve);
      for (uint32_t i = 0; extend && i < extra; ++i) {
        extend = Usable(regions_[next + i].state);
        prepared = prepared && regions_[next + i].state == RState::kPrepared;
      }
      if (extend) {
        const uint32_t head = uint32_t(open_);
        const uint64_t epoch = R.epoch;
        if (!prepared) TW_RETURN_IF_ERROR(WriteMarkersLocked(next, extra, epoch, l));
        Region& H = regions_[head];
        for (uint32_t i = 0; i < extra; ++i) {
          regions_[next + i] = Region{};
          regions_[next + i].state = RState::kCont;
          regions_[next + i].owner = head;
        }
        H.span += extra;
        continue;  // allocate from the longer run
      }
      CloseOpenLocked();
    }
    if (attempt == 1) break;
    if (stop_) return CancelledError("store closing");
    uint32_t span = std::max<uint32_t>(1, uint32_t((length + rs - 1) / rs));
    if (span > sb_.region_count) {
      return InvalidArgumentError(StrCat("record of ", length, " bytes exceeds the NVMe tier"));
    }
    // Where the run has the most room to grow, so that records of half a region or more do
    // not leave half of each region unused.
    if (!reclaim && UsableLocked() < span + kReclaimReserve) {
      return ResourceExhaustedError("nvme: no free region (the last is kept for reclaim)");
    }
    int64_t first = PickRunStartLocked(span);
    if (first < 0) return ResourceExhaustedError("nvme: no free region");
    TW_RETURN_IF_ERROR(OpenRegionLocked(uint32_t(first), span, l));
    ++attempt;
  }
  return ResourceExhaustedError("nvme: record does not fit a fresh region");
}

Status NvmeEngine::WriteMarkersLocked(uint32_t first, uint32_t n, uint64_t epoch,
                                      std::unique_lock<std::mutex>& l) {
  for (uint32_t i = 0; i < n; ++i) regions_[first + i].state = RState::kOpen;
  l.unlock();
  AlignedBuffer hb(uint64_t(n) * kBlock);
  for (uint32_t i = 0; i < n; ++i) {
    RegionHeader h;
    h.state = RegionState::kOpen;
    h.region = first + i;
    h.epoch = epoch;
    EncodeRegionHeader(h, sb_.store_id, hb.data() + uint64_t(i) * kBlock);
  }
  Device& d0 = volume_->device(0);
  Status s = d0.Write(sb_.header_off + uint64_t(first) * kBlock, hb.data(), hb.size());
  if (s.ok()) s = d0.Sync();
  l.lock();
  if (!s.ok()) {
    for (uint32_t i = 0; i < n; ++i) regions_[first + i].state = RState::kFree;
    counters_.io_errors++;
  }
  return s;
}

Status NvmeEngine::OpenRegionLocked(uint32_t first, uint32_t span,
                                    std::unique_lock<std::mutex>& l) {
  uint64_t epoch;
  if (span == 1 && regions_[first].state == RState::kPrepared) {
    epoch = regions_[first].epoch;
  } else {
    epoch = ++seq_;
    TW_RETURN_IF_ERROR(WriteMarkersLocked(first, span, epoch, l));
  }
  Region& R = regions_[first];
  R = Region{};
  R.state = RState::kOpen;
  R.epoch = epoch;
  R.span = span;
  R.last_access = ++access_clock_;
  for (uint32_t i = 1; i < span; ++i) {
    regions_[first + i] = Region{};
    regions_[first + i].state = RState::kCont;
    regions_[first + i].owner = first;
  }
  open_ = first;
  journal_order_.push_back(first);
  return OkStatus();
}

Status NvmeEngine::PrepareRegions(uint32_t want) {
  // Under the allocator's lock: a region whose marker is being written is neither usable nor
  // prepared yet, and an allocation that saw it so would end its run early (wasting the
  // run's tail) or find no room at all. An allocation waits for the write instead.
  std::lock_guard<std::mutex> al(alloc_mu_);
  std::unique_lock<std::mutex> l(mu_);
  uint32_t have = 0;
  for (const Region& r : regions_) have += r.state == RState::kPrepared;
  // The regions the allocator takes next: those right after the open run (it grows over
  // them), then the head of the longest free stretch and the regions after it.
  std::vector<uint32_t> order;
  if (open_ >= 0) {
    const Region& O = regions_[size_t(open_)];
    for (uint32_t i = O.span; i < kMaxRunRegions; ++i) order.push_back(uint32_t(open_) + i);
  }
  if (int64_t s = PickRunStartLocked(1); s >= 0) {
    for (uint32_t i = 0; i < kMaxRunRegions; ++i) order.push_back(uint32_t(s) + i);
  }
  for (uint32_t r : order) {
    if (have >= want || stop_) break;
    if (r >= regions_.size() || regions_[r].state != RState::kFree) continue;
    const uint64_t epoch = ++seq_;
    TW_RETURN_IF_ERROR(WriteMarkersLocked(r, 1, epoch, l));
    regions_[r] = Region{};
    regions_[r].state = RState::kPrepared;
    regions_[r].epoch = epoch;
    ++have;
  }
  return OkStatus();
}

void NvmeEngine::Abort(const Allocation& a) {
  std::lock_guard<std::mutex> l(mu_);
  regions_[a.region].inflight--;
  cv_.notify_all();
}

Status NvmeEngine::Write(const Allocation& a, const void* buf) {
  Status s = volume_->Write(a.offset, buf, a.length);
  if (!s.ok()) {
    std::lock_guard<std::mutex> l(mu_);
    counters_.io_errors++;
  }
  return s;
}

Status NvmeEngine::Write(const Allocation& a, const void* header, uint64_t header_len,
                         const void* rest) {
  VolumeIo ios[2] = {{a.offset, header_len, const_cast<void*>(header)},
                     {a.offset + header_len, a.length - header_len, const_cast<void*>(rest)}};
  Status s = volume_->Write({ios, a.length > header_len ? 2u : 1u});
  if (!s.ok()) {
    std::lock_guard<std::mutex> l(mu_);
    counters_.io_errors++;
  }
  return s;
}

Status NvmeEngine::Commit(const Allocation& a, const SummaryEntry& entry, bool wait) {
  if (wait) return CommitAsync(a, entry).get();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) {
      regions_[a.region].inflight--;
      return CancelledError("store closing");
    }
    pending_.push_back({entry, a.region, nullptr});
  }
  cv_.notify_all();
  return OkStatus();
}

std::future<Status> NvmeEngine::CommitAsync(const Allocation& a, const SummaryEntry& entry) {
  auto done = std::make_shared<std::promise<Status>>();
  std::future<Status> f = done->get_future();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) {
      regions_[a.region].inflight--;
      done->set_value(CancelledError("store closing"));
      return f;
    }
    pending_.push_back({entry, a.region, done});
  }
  cv_.notify_all();
  return f;
}

void NvmeEngine::Finish(std::vector<Pending>& batch, const Status& s) {
  {
    std::lock_guard<std::mutex> l(mu_);
    for (Pending& p : batch) {
      Region& R = regions_[p.region];
      R.inflight--;
      if (s.ok()) R.entries.push_back(p.entry);
    }
    if (!s.ok()) counters_.io_errors++;
  }
  for (Pending& p : batch) {
    if (p.done) {
      p.done->set_value(s);
    } else if (!s.ok() && on_lost_) {
      on_lost_(p.entry);
    }
  }
  batch.clear();
  cv_.notify_all();
}

void NvmeEngine::CommitterLoop() {
  using namespace std::chrono_literals;
  auto seal_retry_at = std::chrono::steady_clock::time_point::min();
  std::unique_lock<std::mutex> l(mu_);
  auto seal_ready = [&] {
    if (journal_order_.empty()) return false;
    const Region& R = regions_[journal_order_.front()];
    return R.state == RState::kClosing && R.inflight == 0 &&
           std::chrono::steady_clock::now() >= seal_retry_at;
  };
  while (true) {
    cv_.wait_for(l, 100ms, [&] { return stop_ || !pending_.empty() || seal_ready(); });
    if (stop_) break;
    std::vector<Pending> batch;
    batch.swap(pending_);
    l.unlock();
    for (Pending& p : batch) held_[p.region].push_back(std::move(p));
    // The journal holds the records of one region at a time (the oldest unsealed one).
    while (true) {
      l.lock();
      if (journal_order_.empty()) {
        l.unlock();
        break;
      }
      uint32_t owner = journal_order_.front();
      l.unlock();
      auto it = held_.find(owner);
      if (it != held_.end()) {
        std::vector<Pending> mine = std::move(it->second);
        held_.erase(it);
        uint64_t blocks = (mine.size() + kEntriesPerJournalBlock - 1) / kEntriesPerJournalBlock;
        Status s;
        if (journal_pos_ + blocks > sb_.journal_blocks) {
          s = InternalError("journal overflow");
        } else {
          AlignedBuffer jb(blocks * kBlock);
          std::vector<SummaryEntry> es;
          for (auto& p : mine) es.push_back(p.entry);
          for (uint64_t b = 0; b < blocks; ++b) {
            size_t from = b * kEntriesPerJournalBlock;
            size_t n = std::min(kEntriesPerJournalBlock, es.size() - from);
            EncodeJournalBlock(sb_.journal_base + journal_pos_ + b,
                               std::span<const SummaryEntry>(es).subspan(from, n), sb_.store_id,
                               jb.data() + b * kBlock);
          }
          Device& d0 = volume_->device(0);
          // One sync of every device makes the records' data and their journal entries
          // durable together; the puts are acknowledged after it. A crash before it may
          // leave an entry whose data is torn: reads check every CRC, so such a record is a
          // `corrupt` miss, never bytes.
          s = d0.Write(sb_.journal_off + uint64_t(journal_pos_) * kBlock, jb.data(), jb.size());
          if (s.ok()) s = volume_->Sync();
          // After a failure the next commit rewrites these positions: recovery reads
          // consecutive blocks, so a hole would hide every later commit. A block the failed
          // write left behind names records whose data was synced, so finding it is harmless.
          if (s.ok()) journal_pos_ += uint32_t(blocks);
        }
        if (!s.ok()) TW_LOG(kWarn, "journal write failed", {{"error", s}});
        {
          std::lock_guard<std::mutex> g(mu_);
          counters_.commits++;
        }
        Finish(mine, s);
      }
      l.lock();
      Region& R = regions_[owner];
      if (!(R.state == RState::kClosing && R.inflight == 0 && held_.count(owner) == 0 &&
            std::chrono::steady_clock::now() >= seal_retry_at)) {
        l.unlock();
        break;
      }
      std::vector<SummaryEntry> entries = R.entries;
      uint64_t epoch = R.epoch;
      l.unlock();
      Status s;
      if (!entries.empty()) {
        s = SealRegion(owner, entries, epoch);
        if (s.ok()) {
          sb_.journal_base += journal_pos_ + 1;
          s = WriteCheckpoint();
        }
      }
      l.lock();
      if (!s.ok()) {
        counters_.io_errors++;
        seal_retry_at = std::chrono::steady_clock::now() + 100ms;
        l.unlock();
        TW_LOG(kWarn, "region seal failed; will retry",
               {{"region", uint64_t(owner)}, {"error", s}});
        // The commits of later regions wait for this seal (the journal holds one region at a
        // time). While it fails they fail with it: a device that stays dead must answer their
        // puts with an error, not hold them until it comes back (a put waits for its commit
        // without a deadline). Unacknowledged, so nothing durable is lost.
        std::vector<Pending> stuck;
        for (auto& [r, v] : held_) {
          for (Pending& p : v) stuck.push_back(std::move(p));
        }
        held_.clear();
        if (!stuck.empty()) Finish(stuck, s);
        break;
      }
      if (entries.empty()) {
        for (uint32_t i = 0; i < R.span; ++i) regions_[owner + i] = Region{};
      } else {
        R.state = RState::kSealed;
        R.seal_seq = ++seal_clock_;
        R.entries.clear();
        R.entries.shrink_to_fit();
        counters_.seals++;
        journal_pos_ = 0;
      }
      journal_order_.pop_front();
      l.unlock();
      cv_.notify_all();
    }
    l.lock();
    cv_.notify_all();
  }
  // Stopped without Close(): whatever was not committed stays uncommitted.
  std::vector<Pending> rest;
  rest.swap(pending_);
  for (auto& [r, v] : held_) {
    for (auto& p : v) rest.push_back(std::move(p));
  }
  held_.clear();
  l.unlock();
  Finish(rest, CancelledError("store stopped"));
}

Status NvmeEngine::Close() {
  using namespace std::chrono_literals;
  std::lock_guard<std::mutex> al(alloc_mu_);
  std::unique_lock<std::mutex> l(mu_);
  CloseOpenLocked();
  bool done =
      cv_.wait_for(l, 60s, [&] { return stop_ || (journal_order_.empty() && pending_.empty()); });
  stop_ = true;
  l.unlock();
  cv_.notify_all();
  if (committer_.joinable()) committer_.join();
  if (!done) return UnavailableError("nvme: could not seal the open region before closing");
  return OkStatus();
}

uint32_t NvmeEngine::free_regions() const {
  std::lock_guard<std::mutex> l(mu_);
  uint32_t n = 0;
  for (const Region& r : regions_) n += Usable(r.state);
  return n;
}

std::vector<NvmeEngine::SealedRegion> NvmeEngine::SealedRegions() const {
  std::vector<SealedRegion> out;
  std::lock_guard<std::mutex> l(mu_);
  for (uint32_t r = 0; r < regions_.size(); ++r) {
    const Region& R = regions_[r];
    if (R.state == RState::kSealed) out.push_back({r, R.seal_seq, R.last_access});
  }
  return out;
}

StatusOr<std::vector<SummaryEntry>> NvmeEngine::RegionEntries(uint32_t region) {
  Device& d0 = volume_->device(0);
  AlignedBuffer hb(kBlock, false);
  TW_RETURN_IF_ERROR(d0.Read(sb_.header_off + uint64_t(region) * kBlock, hb.data(), kBlock));
  RegionHeader h = DecodeRegionHeader(hb.data(), sb_.store_id);
  if (h.state != RegionState::kSealed || h.count > sb_.max_entries) {
    return DataLossError(StrCat("region ", region, ": no valid summary"));
  }
  std::vector<SummaryEntry> out;
  if (h.count == 0) return out;
  uint64_t len = AlignUp(uint64_t(h.count) * kEntryBytes, kBlock);
  AlignedBuffer b(len, false);
  TW_RETURN_IF_ERROR(d0.Read(sb_.dense_off + uint64_t(region) * dense_bytes_, b.data(), len));
  if (Crc32c(b.data(), uint64_t(h.count) * kEntryBytes) != h.entries_crc) {
    return DataLossError(StrCat("region ", region, ": summary checksum mismatch"));
  }
  for (uint32_t i = 0; i < h.count; ++i) out.push_back(DecodeEntry(b.data() + i * kEntryBytes));
  return out;
}

Status NvmeEngine::ReleaseRegion(uint32_t region, std::span<const SummaryEntry> entries,
                                 std::span<const uint64_t> then_allocate,
                                 std::vector<StatusOr<Allocation>>* allocations) {
  std::vector<SummaryEntry> carry;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (regions_[region].state != RState::kSealed) {
      return FailedPreconditionError(StrCat("region ", region, " is not sealed"));
    }
    const uint64_t oldest = OldestLiveEpochLocked(region);
    for (const SummaryEntry& e : entries) {
      if ((e.kind == EntryKind::kDeleteKey || e.kind == EntryKind::kEvictNamespace) &&
          oldest < e.seq) {
        carry.push_back(e);
      }
    }
  }
  // Tombstones that may still hide a record elsewhere move to the open region (keeping their
  // sequence numbers) and are durable before this region's copy goes.
  for (SummaryEntry t : carry) {
    TW_ASSIGN_OR_RETURN(Allocation a, AllocateImpl(0, /*reclaim=*/true));
    t.region = a.region;
    t.epoch = a.epoch;
    t.offset = uint64_t(a.region) * sb_.region_size;
    TW_RETURN_IF_ERROR(Commit(a, t, /*wait=*/true));
  }
  // The allocator's lock from the release to the last of `then_allocate`: no other
  // allocation can take the freed space before them.
  std::lock_guard<std::mutex> al(alloc_mu_);
  {
    std::unique_lock<std::mutex> l(mu_);
    Region& R = regions_[region];
    if (R.state != RState::kSealed) {
      return FailedPreconditionError("region changed while released");
    }
    const Region saved = R;
    const uint64_t epoch = ++seq_;
    // An "open" header at a fresh epoch makes the region's summary (and so every record of
    // the run) invalid for recovery; the region is then prepared for its next use.
    Status s = WriteMarkersLocked(region, 1, epoch, l);
    if (!s.ok()) {
      regions_[region] = saved;
      return s;
    }
    for (uint32_t i = 1; i < saved.span && region + i < regions_.size(); ++i) {
      regions_[region + i] = Region{};
    }
    regions_[region] = Region{};
    regions_[region].state = RState::kPrepared;
    regions_[region].epoch = epoch;
    cv_.notify_all();
  }
  for (uint64_t length : then_allocate) {
    allocations->push_back(length == 0 || length % kBlock != 0
                               ? StatusOr<Allocation>(InvalidArgumentError("bad record length"))
                               : AllocateAllocLocked(length, /*reclaim=*/true));
  }
  return OkStatus();
}

std::vector<NvmeEngine::RegionView> NvmeEngine::Regions() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<RegionView> out(regions_.size());
  for (uint32_t r = 0; r < regions_.size(); ++r) {
    const uint32_t head = regions_[r].state == RState::kCont ? regions_[r].owner : r;
    const RState s = regions_[head].state;
    out[r] = {head, s == RState::kSealed    ? RunState::kSealed
                    : s == RState::kClosing ? RunState::kSealing
                                            : RunState::kNotFull};
  }
  return out;
}

bool NvmeEngine::AwaitSealed(uint32_t head, std::chrono::milliseconds max) {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, max, [&] { return stop_ || regions_[head].state != RState::kClosing; });
}

uint32_t NvmeEngine::HeadOf(uint64_t offset) const {
  std::lock_guard<std::mutex> l(mu_);
  uint32_t r = RegionOf(offset);
  if (r < regions_.size() && regions_[r].state == RState::kCont) return regions_[r].owner;
  return r;
}

void NvmeEngine::Touch(std::span<const uint64_t> offsets) {
  if (!track_reads_ || offsets.empty()) return;
  std::lock_guard<std::mutex> l(mu_);
  for (uint64_t offset : offsets) {
    uint32_t r = RegionOf(offset);
    if (r < regions_.size() && regions_[r].state == RState::kCont) r = regions_[r].owner;
    if (r < regions_.size()) regions_[r].last_access = ++access_clock_;
  }
}

NvmeEngine::Counters NvmeEngine::counters() const {
  std::lock_guard<std::mutex> l(mu_);
  Counters c = counters_;
  c.regions = regions_.size();
  for (const Region& r : regions_) c.free_regions += Usable(r.state);
  c.region_size = sb_.region_size;
  c.capacity = uint64_t(sb_.region_count) * sb_.region_size;
  c.bytes_read = volume_->bytes_read();
  c.bytes_written = volume_->bytes_written();
  return c;
}

}  // namespace tw::store
