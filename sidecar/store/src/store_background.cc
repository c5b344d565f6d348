// The Store's background work: write-back of memory-durability chunks, region reclaim,
// lease expiry, and the clean close.
#include <algorithm>
#include <chrono>
#include <cstring>

#include "aligned_buffer.h"
#include "store_impl.h"
#include "tw/common/log.h"

namespace tw::store {

using namespace std::chrono_literals;

void StoreImpl::WritebackLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    work_cv_.wait_for(l, 50ms, [&] { return stop_ || !writeback_q_.empty(); });
    if (stop_) break;
    if (writeback_q_.empty()) continue;
    const Tag k = writeback_q_.front();
    writeback_q_.pop_front();
    Entry* e = Find(k);
    if (!e || e->doomed || !e->dirty || !e->ready || !e->in_dram) continue;
    const uint64_t len = e->record_len();
    if (!Admit(k, len)) {
      e->dirty = false;
      e->unwritten = true;
      cv_.notify_all();
      continue;
    }
    Pin(k, *e);
    uint8_t* rec = dram_->base() + dram_objs_[DramId(k)].off;
    const uint64_t header_len = e->header_len();
    wb_busy_ = true;
    l.unlock();
    StatusOr<NvmeEngine::Allocation> a = InternalError("corrupt DRAM header");
    auto h = DecodeHeader(rec, header_len);
    RecordLayout layout;
    if (h.ok()) {
      // Readers may be copying from the arena meanwhile: the arena's header stays as it is;
      // the checksums and sequence number go into a copy that is written in its place.
      layout = ComputeLayout(h->header_len, h->info.segment_sizes);
      AlignedBuffer header(layout.header_len, false);
      if (header.data()) {
        std::memcpy(header.data(), rec, layout.header_len);
        FinalizeHeader(layout, rec, header.data());
        a = WriteRecord(k, h->info, header.data(), rec, layout, /*wait=*/false, Clock::now() + 2s);
      }
    }
    l.lock();
    wb_busy_ = false;
    e = Find(k);
    if (e) {
      if (a.ok()) {
        e->dirty = false;
        stats_.nvme.bytes_written += layout.value_size;
      } else if (a.status().code() == StatusCode::kDeadlineExceeded && !stop_) {
        writeback_q_.push_back(k);  // no space yet: try again after reclaim
      } else if (!stop_ && !e->doomed) {
        TW_LOG(kWarn, "write-back failed; chunk stays in DRAM only",
               {{"key", h.ok() ? h->info.key.Hex() : std::string("?")}, {"error", a.status()}});
        e->dirty = false;
        e->unwritten = true;
      }
      Unpin(k);
    }
    cv_.notify_all();
  }
}

void StoreImpl::OnLost(const SummaryEntry& se) {
  std::lock_guard<std::mutex> l(mu_);
  if (stop_ || se.tombstone()) return;
  const Tag t = TagOf(se.key);
  Entry* e = Find(t);
  if (!e || e->nvme_off() != se.offset) return;
  region_pins_[nvme_->HeadOf(se.offset)] -= Pins(t);
  e->set_nvme_off(kNoNvme);
  if (e->in_dram) {
    e->dirty = true;
    writeback_q_.push_back(t);
    work_cv_.notify_all();
  } else {
    RemoveEntry(t, false);
  }
}

std::vector<uint8_t> StoreImpl::ReclaimCosts() {
  const std::vector<NvmeEngine::RegionView> regions = nvme_->Regions();
  std::vector<uint8_t> cost(regions.size(), 0);
  for (uint32_t r = 0; r < regions.size(); ++r) {
    if (regions[r].run == NvmeEngine::RunState::kNotFull) cost[regions[r].head] = kUnpriced;
  }
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [k, e] : index_) {
    if (!e.on_nvme() || e.in_dram || e.doomed) continue;
    const uint32_t r = nvme_->RegionOf(e.nvme_off());
    if (r >= regions.size()) continue;
    uint8_t& c = cost[regions[r].head];
    if (c != kUnpriced) c = std::max<uint8_t>(c, e.disk ? 2 : 1);
  }
  return cost;
}

bool StoreImpl::PricesHold(const std::vector<uint8_t>& cost, uint8_t best) {
  if (best == kUnpriced) return false;  // sealed since the prices were made
  for (const NvmeEngine::RegionView& v : nvme_->Regions()) {
    // A run that was not full when priced may be cheaper: wait for it too.
    const uint8_t c = cost[v.head] == kUnpriced ? 0 : cost[v.head];
    if (v.run != NvmeEngine::RunState::kSealing || c >= best) continue;
    // A device that stopped syncing does not stall reclaim for good.
    return !nvme_->AwaitSealed(v.head, std::chrono::seconds(1));
  }
  return true;
}

// Reclaims one sealed region (the first candidate in reclaim order that no read or lease
// pins). A live chunk of the region is "wanted" when it was read since it was written or has
// stored children outside the region, and so is every ancestor of a wanted chunk in the
// region (a descendant is unreachable without them) unless the chain's top is an orphan
// (parent gone). Wanted chunks also in DRAM lose their NVMe copy and are queued for
// write-back; wanted chunks only on NVMe are rewritten elsewhere, ancestors first, within a
// budget of a quarter of a region. Everything else is dropped.
//
// Regions are tried cheapest first (`cost`, from ReclaimCosts), then in the configured order.
// Puts that do not wait for their commits (memory durability) can fill the tier faster than
// the committer seals their runs; those runs are not candidates yet, and reclaiming the only
// sealed ones could drop disk-acknowledged chunks. So a run waiting to be sealed that would
// lose less is waited for (at most a second: a device that stopped syncing does not stall
// reclaim for good).
StoreImpl::ReclaimStep StoreImpl::ReclaimOne(const std::vector<uint8_t>& cost) {
  std::vector<uint32_t> candidates = nvme_->ReclaimCandidates(opts_.nvme.reclaim);
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](uint32_t a, uint32_t b) { return cost[a] < cost[b]; });
  auto pinned = [&](uint32_t r) {
    std::lock_guard<std::mutex> l(mu_);
    return region_pins_[r] > 0 || stop_;
  };
  if (auto best = std::find_if_not(candidates.begin(), candidates.end(), pinned);
      best != candidates.end() && !PricesHold(cost, cost[*best])) {
    return ReclaimStep::kReprice;
  }
  for (uint32_t r : candidates) {
    if (pinned(r)) continue;
    auto entries = nvme_->RegionEntries(r);
    // The region's records; its tombstones stay with `entries` for ReleaseRegion.
    std::vector<SummaryEntry> recs;
    if (entries.ok()) {
      for (const SummaryEntry& se : *entries) {
        if (!se.tombstone()) recs.push_back(se);
      }
    }
    std::vector<std::pair<Tag, SummaryEntry>> rewrite;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (region_pins_[r] > 0 || stop_) continue;
      std::vector<Tag> tags;
      if (entries.ok()) {
        for (const SummaryEntry& se : recs) tags.push_back(TagOf(se.key));
      } else {
        for (auto& [t, e] : index_) {
          if (e.on_nvme() && nvme_->HeadOf(e.nvme_off()) == r) tags.push_back(t);
        }
      }
      // The region's live chunks.
      absl::flat_hash_map<Tag, size_t> pos;
      std::vector<size_t> live;
      for (size_t i = 0; i < tags.size(); ++i) {
        Entry* e = Find(tags[i]);
        if (!e || !e->on_nvme() || nvme_->HeadOf(e->nvme_off()) != r) continue;
        if (entries.ok() && e->nvme_off() != recs[i].offset) continue;
        if (pos.try_emplace(tags[i], i).second) live.push_back(i);
      }
      std::vector<uint32_t> inside(tags.size(), 0);  // children within the region
      for (size_t i : live) {
        const Entry* e = Find(tags[i]);
        auto it = e->parent ? pos.find(e->parent) : pos.end();
        if (it != pos.end()) inside[it->second]++;
      }
      // Each live chunk's parent within the region, its depth there and its chain's top.
      std::vector<int64_t> up(tags.size(), -1);
      for (size_t i : live) {
        const Entry* e = Find(tags[i]);
        auto it = e->parent ? pos.find(e->parent) : pos.end();
        if (it != pos.end() && it->second != i) up[i] = int64_t(it->second);
      }
      std::vector<int> depth(tags.size(), 0);  // 0: not known yet; the top is 1
      std::vector<size_t> top(tags.size(), 0);
      for (size_t i : live) {
        std::vector<size_t> path;
        size_t j = i;
        while (depth[j] == 0 && path.size() <= tags.size()) {
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
      std::vector<bool> want(tags.size(), false);
      for (size_t i : live) {
        const Entry* e = Find(tags[i]);
        const bool outside = e->children == kChildrenSticky || e->children > inside[i] || e->hit;
        if (!outside || Orphan(*Find(tags[top[i]]))) continue;
        for (int64_t j = int64_t(i); j >= 0 && !want[size_t(j)]; j = up[size_t(j)]) {
          want[size_t(j)] = true;
        }
      }
      std::vector<std::pair<int, size_t>> keep;  // (depth, index): ancestors first
      for (size_t i : live) {
        Entry* e = Find(tags[i]);
        if (e->in_dram) {
          e->set_nvme_off(kNoNvme);
          if (want[i]) {
            e->dirty = true;
            writeback_q_.push_back(tags[i]);
          }
          e->hit = false;
        } else if (want[i] && entries.ok()) {
          keep.push_back({depth[i], i});
        }
      }
      std::sort(keep.begin(), keep.end());
      absl::flat_hash_set<size_t> kept;
      uint64_t budget = nvme_->region_size() / 4;
      // Ancestors first, until the budget is spent: a descendant kept without its ancestor
      // would be unreachable.
      for (auto [d, i] : keep) {
        const SummaryEntry& se = recs[i];
        const uint64_t len = uint64_t(se.record_4k) * 4096;
        if (len > budget || closing_) break;
        budget -= len;
        rewrite.push_back({tags[i], se});
        kept.insert(i);
      }
      // Drop the rest, deepest first.
      for (size_t k = live.size(); k-- > 0;) {
        const size_t i = live[k];
        Entry* e = Find(tags[i]);
        if (!e || e->in_dram || kept.contains(i)) continue;
        RemoveEntry(tags[i], true);
        stats_.nvme.evictions++;
      }
    }
    // Read the records to rewrite while the region is still theirs.
    std::vector<AlignedBuffer> bufs(rewrite.size());
    for (size_t k = 0; k < rewrite.size(); ++k) {
      const SummaryEntry& se = rewrite[k].second;
      const uint64_t len = uint64_t(se.record_4k) * 4096;
      AlignedBuffer b(len, false);
      if (!b.data() || !nvme_->Read(se.offset, b.data(), len).ok()) continue;
      auto h = DecodeHeader(b.data(), len);
      if (h.ok() && h->info.key == se.key) bufs[k] = std::move(b);
    }
    std::vector<StatusOr<NvmeEngine::Allocation>> to;
    std::vector<bool> moving(rewrite.size(), false);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (region_pins_[r] > 0) continue;  // read meanwhile: the region waits for the next round
      // Wanted chunks leave the region: invisible (like a chunk being put) until written.
      for (size_t k = 0; k < rewrite.size(); ++k) {
        const auto& [t, se] = rewrite[k];
        Entry* e = Find(t);
        to.push_back(CancelledError("not moved"));
        if (!e || e->nvme_off() != se.offset) continue;
        if (e->in_dram) {  // promoted meanwhile
          e->set_nvme_off(kNoNvme);
          e->dirty = true;
          writeback_q_.push_back(t);
          continue;
        }
        if (!bufs[k].data()) {
          RemoveEntry(t, true);
          stats_.nvme.evictions++;
          continue;
        }
        e->set_nvme_off(kNoNvme);
        e->ready = false;
        Pin(t, *e);
        moving[k] = true;
      }
    }
    // No index entry points into the region any more, so nothing pins it: its header is
    // rewritten (and its live tombstones carried forward) without the Store's lock. If that
    // fails the region stays sealed; its chunks are already out of the index either way.
    // The rewrites get their space in the same step, before a waiting put can take the
    // freed region (a rewrite without room would drop a chunk whose children stay behind).
    static const std::vector<SummaryEntry> kNone;
    std::vector<uint64_t> lengths;
    for (size_t k = 0; k < rewrite.size(); ++k) {
      if (moving[k]) lengths.push_back(uint64_t(rewrite[k].second.record_4k) * 4096);
    }
    std::vector<StatusOr<NvmeEngine::Allocation>> space;
    Status released = nvme_->ReleaseRegion(r, entries.ok() ? *entries : kNone, lengths, &space);
    if (!released.ok()) {
      TW_LOG(kWarn, "reclaim: region not released", {{"region", uint64_t(r)}, {"error", released}});
      for (uint64_t len : lengths) space.push_back(nvme_->Allocate(len));  // room elsewhere?
    }
    for (size_t k = 0, j = 0; k < rewrite.size(); ++k) {
      if (moving[k]) to[k] = std::move(space[j++]);
    }
    std::vector<Status> wrote(rewrite.size());
    for (size_t k = 0; k < rewrite.size(); ++k) {
      if (!to[k].ok()) continue;
      SetHeaderSeq(bufs[k].data(), to[k]->seq);
      wrote[k] = nvme_->Write(*to[k], bufs[k].data());
    }
    std::vector<size_t> commit;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (size_t k = 0; k < rewrite.size(); ++k) {
        if (!moving[k]) continue;
        const Tag t = rewrite[k].first;
        Entry* e = Find(t);  // pinned: still there, maybe doomed
        if (to[k].ok() && wrote[k].ok() && !e->doomed) {
          e->set_nvme_off(to[k]->offset);
          region_pins_[nvme_->HeadOf(to[k]->offset)] += Pins(t);
          e->ready = true;
          e->hit = false;
          stats_.rewrites++;
          commit.push_back(k);
        } else {
          if (to[k].ok()) nvme_->Abort(*to[k]);
          e->ready = true;
          RemoveEntry(t, true);
          stats_.nvme.evictions++;
        }
        Unpin(t);
      }
      cv_.notify_all();
      work_cv_.notify_all();
    }
    for (size_t k : commit) {
      SummaryEntry moved = rewrite[k].second;
      moved.offset = to[k]->offset;
      moved.region = to[k]->region;
      moved.seq = to[k]->seq;
      moved.epoch = to[k]->epoch;
      // A failed commit reaches OnLost(), which drops the entry.
      nvme_->Commit(*to[k], moved, /*wait=*/false).IgnoreError();
    }
    // A region that could not be released (its tombstones found no room yet) is tried again
    // later; another candidate may free the room they need.
    if (released.ok()) return ReclaimStep::kReclaimed;
  }
  return ReclaimStep::kNone;
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

void StoreImpl::ReclaimLoop() {
  while (true) {
    bool wanted;
    {
      std::unique_lock<std::mutex> l(mu_);
      work_cv_.wait_for(l, 20ms, [&] { return stop_ || reclaim_wanted_; });
      if (stop_) return;
      ExpireLeases();
      TrimDram();
      wanted = reclaim_wanted_;
      reclaim_wanted_ = false;
    }
    if (!nvme_) continue;
    // Reclaim on real pressure: in a small tier the watermarks round to no region, so reclaim
    // starts only once no region is free (a put that finds none asks for it at once) and
    // stops at two free.
    const double total = nvme_->region_count();
    const uint32_t start_below =
        std::max<uint32_t>(1, uint32_t(total * (1.0 - opts_.nvme.high_watermark)));
    const uint32_t stop_at =
        std::max<uint32_t>(start_below + 1, uint32_t(total * (1.0 - opts_.nvme.low_watermark)));
    uint32_t free = nvme_->free_regions();
    if (free >= start_below && !wanted) {
      nvme_->PrepareRegions(2).IgnoreError();  // a failure shows again on the put path
      continue;
    }
    // One pass over the index prices every region for the whole batch; regions filled
    // meanwhile are not candidates yet, so the prices stay good enough.
    std::vector<uint8_t> cost = ReclaimCosts();
    while (free < stop_at || wanted) {
      const ReclaimStep step = ReclaimOne(cost);
      if (step == ReclaimStep::kNone) break;
      if (step == ReclaimStep::kReprice) {
        cost = ReclaimCosts();
        continue;
      }
      wanted = false;
      free = nvme_->free_regions();
    }
  }
}

Status StoreImpl::Close(std::chrono::nanoseconds grace) {
  const auto deadline = Clock::now() + grace;
  std::unique_lock<std::mutex> l(mu_);
  if (closed_) return OkStatus();
  closing_ = true;
  // Write back what we can within the grace period.
  while ((!writeback_q_.empty() || wb_busy_) && Clock::now() < deadline) {
    work_cv_.notify_all();
    cv_.wait_until(l, std::min(deadline, Clock::now() + 20ms));
  }
  uint64_t left = 0;
  for (auto& [t, e] : index_) left += e.dirty;
  stop_ = true;
  closed_ = true;
  l.unlock();
  work_cv_.notify_all();
  cv_.notify_all();
  if (writeback_.joinable()) writeback_.join();
  if (reclaim_.joinable()) reclaim_.join();
  if (left) TW_LOG(kWarn, "close: chunks not written back in the grace period", {{"chunks", left}});
  Status s;
  if (nvme_) s = nvme_->Close();
  return s;
}

StoreImpl::~StoreImpl() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  cv_.notify_all();
  if (writeback_.joinable()) writeback_.join();
  if (reclaim_.joinable()) reclaim_.join();
  nvme_.reset();  // without Close(): the media is left as after a crash
}

}  // namespace tw::store
