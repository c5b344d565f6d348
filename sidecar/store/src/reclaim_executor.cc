// Reclaim, the executor: the background thread that frees NVMe regions before puts need
// them. It prices the regions and reclaims them one by one (ReclaimOne); which chunks of a
// region drop and which are rewritten is the planner's (reclaim_planner.h); this file reads
// the index under mu_, does the I/O without it, and applies the outcome.
#include <algorithm>
#include <chrono>

#include "aligned_buffer.h"
#include "reclaim_planner.h"
#include "store_impl.h"
#include "tw/common/log.h"

namespace tw::store {

using namespace std::chrono_literals;

reclaim::Prices StoreImpl::ReclaimCosts() {
  const std::vector<NvmeEngine::RegionView> regions = nvme_->Regions();
  reclaim::Pricer pricer(regions);
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [k, e] : index_) {
    if (!e.on_nvme() || e.in_dram || e.doomed) continue;
    pricer.AddChunk(nvme_->RegionOf(e.nvme_off()), e.disk);
  }
  return pricer.Take();
}

bool StoreImpl::PricesHold(const reclaim::Prices& cost, uint8_t best) {
  const reclaim::PriceCheck check = reclaim::CheckPrices(nvme_->Regions(), cost, best);
  switch (check.kind) {
    case reclaim::PriceCheck::kHold:
      return true;
    case reclaim::PriceCheck::kReprice:
      return false;
    case reclaim::PriceCheck::kAwaitSeal:
      // A device that stopped syncing does not stall reclaim for good.
      return !nvme_->AwaitSealed(check.head, 1s);
  }
  return true;
}

bool StoreImpl::RegionPinned(uint32_t r) {
  std::lock_guard<std::mutex> l(mu_);
  return region_pins_[r] > 0 || stop_;
}

// Regions are tried cheapest first (`cost`, from ReclaimCosts), then in the configured order.
// Puts that do not wait for their commits (memory durability) can fill the tier faster than
// the committer seals their runs; those runs are not candidates yet, and reclaiming the only
// sealed ones could drop disk-acknowledged chunks. So a run waiting to be sealed that would
// lose less is waited for (at most a second: a device that stopped syncing does not stall
// reclaim for good).
StoreImpl::ReclaimStep StoreImpl::ReclaimOne(const reclaim::Prices& cost) {
  const std::vector<uint32_t> candidates =
      reclaim::OrderCandidates(nvme_->SealedRegions(), opts_.nvme.reclaim, cost);
  auto pinned = [&](uint32_t r) { return RegionPinned(r); };
  if (auto best = std::find_if_not(candidates.begin(), candidates.end(), pinned);
      best != candidates.end() && !PricesHold(cost, cost[*best])) {
    return ReclaimStep::kReprice;
  }
  for (uint32_t r : candidates) {
    if (pinned(r)) continue;
    // A region that could not be released (its tombstones found no room yet) is tried again
    // later; another candidate may free the room they need.
    if (ReclaimRegion(r)) return ReclaimStep::kReclaimed;
  }
  return ReclaimStep::kNone;
}

// Reclaims region `r` in four steps, the Store's lock held only between the I/O:
// 1. (locked) the region's live chunks go to the planner; chunks also in DRAM lose their NVMe
//    copy, the dropped ones leave the index; the rest are to be rewritten;
// 2. (unlocked) the records to rewrite are read while the region is still theirs;
// 3. (locked) they leave the index's view of the region: invisible until rewritten;
// 4. (unlocked) the region is released and the rewrites get their space in the same step,
//    then are written; (locked) their entries point to the new copies; their commits follow.
bool StoreImpl::ReclaimRegion(uint32_t r) {
  auto entries = nvme_->RegionEntries(r);
  // The region's records; its tombstones stay with `entries` for ReleaseRegion.
  std::vector<SummaryEntry> recs;
  if (entries.ok()) {
    for (const SummaryEntry& se : *entries) {
      if (!se.tombstone()) recs.push_back(se);
    }
  }
  std::vector<std::pair<Tag, SummaryEntry>> rewrite;
  if (!PlanAndDrop(r, entries.ok() ? &recs : nullptr, &rewrite)) return false;
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
  std::vector<bool> moving;
  if (!DetachForRewrite(r, rewrite, bufs, &moving)) return false;
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
  std::vector<StatusOr<NvmeEngine::Allocation>> to;
  for (size_t k = 0, j = 0; k < rewrite.size(); ++k) {
    to.push_back(moving[k] ? std::move(space[j++]) : CancelledError("not moved"));
  }
  std::vector<Status> wrote(rewrite.size());
  for (size_t k = 0; k < rewrite.size(); ++k) {
    if (!to[k].ok()) continue;
    SetHeaderSeq(bufs[k].data(), to[k]->seq);
    wrote[k] = nvme_->Write(*to[k], bufs[k].data());
  }
  const std::vector<size_t> commit = FinishRewrites(rewrite, moving, to, wrote);
  for (size_t k : commit) {
    SummaryEntry moved = rewrite[k].second;
    moved.offset = to[k]->offset;
    moved.region = to[k]->region;
    moved.seq = to[k]->seq;
    moved.epoch = to[k]->epoch;
    // A failed commit reaches OnLost(), which drops the entry.
    nvme_->Commit(*to[k], moved, /*wait=*/false).IgnoreError();
  }
  return released.ok();
}

// Step 3 of ReclaimRegion: the chunks to rewrite leave the region (invisible, pinned, until
// written); `out` says which did. False when the region was read meanwhile.
bool StoreImpl::DetachForRewrite(uint32_t r,
                                 const std::vector<std::pair<Tag, SummaryEntry>>& rewrite,
                                 const std::vector<AlignedBuffer>& bufs, std::vector<bool>* out) {
  std::vector<bool>& moving = *out;
  moving.assign(rewrite.size(), false);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (region_pins_[r] > 0) return false;  // read meanwhile: the region waits for next round
    // Wanted chunks leave the region: invisible (like a chunk being put) until written.
    for (size_t k = 0; k < rewrite.size(); ++k) {
      const auto& [t, se] = rewrite[k];
      Entry* e = Find(t);
      if (!e || e->nvme_off() != se.offset) continue;
      if (e->in_dram) {  // promoted meanwhile
        e->set_nvme_off(kNoNvme);
        e->dirty = true;
        writeback_q_.push_back(t);
        continue;
      }
      if (!bufs[k].data()) {
        NoteEvicted(t, *e, &se.key);
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
  return true;
}

// The end of step 4: the rewritten chunks point to their new copies (or, when their write
// failed, are dropped). Returns the indices of the rewrites to commit.
std::vector<size_t> StoreImpl::FinishRewrites(
    const std::vector<std::pair<Tag, SummaryEntry>>& rewrite, const std::vector<bool>& moving,
    const std::vector<StatusOr<NvmeEngine::Allocation>>& to, const std::vector<Status>& wrote) {
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
        NoteEvicted(t, *e, &rewrite[k].second.key);
        RemoveEntry(t, true);
        stats_.nvme.evictions++;
      }
      Unpin(t);
    }
    cv_.notify_all();
    work_cv_.notify_all();
  }
  return commit;
}

// Step 1 of ReclaimRegion: snapshot the region's live chunks for the planner and apply what
// needs no I/O. `recs` is the region's records from its summary (null when unreadable: the
// live chunks are then found by scanning the index, and none is rewritten).
bool StoreImpl::PlanAndDrop(uint32_t r, const std::vector<SummaryEntry>* recs,
                            std::vector<std::pair<Tag, SummaryEntry>>* rewrite) {
  std::lock_guard<std::mutex> l(mu_);
  if (region_pins_[r] > 0 || stop_) return false;
  std::vector<Tag> tags;
  if (recs) {
    for (const SummaryEntry& se : *recs) tags.push_back(TagOf(se.key));
  } else {
    for (auto& [t, e] : index_) {
      if (e.on_nvme() && nvme_->HeadOf(e.nvme_off()) == r) tags.push_back(t);
    }
  }
  // The region's live chunks: entries that still point to these records (a tag once).
  absl::flat_hash_set<Tag> seen;
  std::vector<reclaim::LiveChunk> live;
  std::vector<size_t> rec_of;  // index into `tags` (and `recs`) of each live chunk
  for (size_t i = 0; i < tags.size(); ++i) {
    const Entry* e = Find(tags[i]);
    if (!e || !e->on_nvme() || nvme_->HeadOf(e->nvme_off()) != r) continue;
    if (recs && e->nvme_off() != (*recs)[i].offset) continue;
    if (!seen.insert(tags[i]).second) continue;
    reclaim::LiveChunk c;
    c.tag = tags[i];
    c.parent = e->parent;
    c.children = e->children;
    c.hit = e->hit;
    c.in_dram = e->in_dram;
    c.orphan = Orphan(*e);
    c.record_bytes = recs ? uint64_t((*recs)[i].record_4k) * 4096 : e->record_len();
    live.push_back(c);
    rec_of.push_back(i);
  }
  const uint64_t budget = recs && !closing_ ? nvme_->region_size() / 4 : 0;
  const reclaim::RegionPlan plan = reclaim::PlanRegion(live, budget);
  for (size_t i : plan.write_back) {
    Entry* e = Find(live[i].tag);
    e->set_nvme_off(kNoNvme);
    e->dirty = true;
    e->hit = false;
    writeback_q_.push_back(live[i].tag);
  }
  for (size_t i : plan.dram_only) {
    Entry* e = Find(live[i].tag);
    e->set_nvme_off(kNoNvme);
    e->hit = false;
  }
  for (size_t i : plan.rewrite) rewrite->push_back({live[i].tag, (*recs)[rec_of[i]]});
  for (size_t i : plan.drop) {
    const Entry* e = Find(live[i].tag);
    if (!e) continue;
    NoteEvicted(live[i].tag, *e, recs ? &(*recs)[rec_of[i]].key : nullptr);
    RemoveEntry(live[i].tag, true);
    stats_.nvme.evictions++;
  }
  return true;
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
    const bool idle = !nvme_ || ReclaimPass(wanted);
    {
      std::lock_guard<std::mutex> l(mu_);
      reclaim_passes_++;
      reclaim_idle_ = idle;
    }
    idle_cv_.notify_all();
  }
}

bool StoreImpl::ReclaimPass(bool wanted) {
  // Reclaim on real pressure: in a small tier the watermarks round to no region, so reclaim
  // starts only once no region is free (a put that finds none asks for it at once) and
  // stops at two free.
  const reclaim::FreeRegionBounds bounds =
      reclaim::Bounds(nvme_->region_count(), opts_.nvme.high_watermark, opts_.nvme.low_watermark);
  uint32_t free = nvme_->free_regions();
  if (free >= bounds.start_below && !wanted) {
    nvme_->PrepareRegions(2).IgnoreError();  // a failure shows again on the put path
    return true;
  }
  // One pass over the index prices every region for the whole batch; regions filled
  // meanwhile are not candidates yet, so the prices stay good enough.
  reclaim::Prices cost = ReclaimCosts();
  while (free < bounds.stop_at || wanted) {
    const ReclaimStep step = ReclaimOne(cost);
    if (step == ReclaimStep::kNone) break;
    if (step == ReclaimStep::kReprice) {
      cost = ReclaimCosts();
      continue;
    }
    wanted = false;
    free = nvme_->free_regions();
  }
  return false;
}

bool StoreImpl::AwaitIdle(std::chrono::milliseconds max) {
  const auto deadline = std::chrono::steady_clock::now() + max;  // real time: a test's limit
  std::unique_lock<std::mutex> l(mu_);
  uint64_t from = reclaim_passes_;
  work_cv_.notify_all();
  return idle_cv_.wait_until(l, deadline, [&] {
    if (!writeback_q_.empty() || wb_busy_) {
      from = reclaim_passes_;
      return false;
    }
    // A whole pass that began after the call (and after write-back ran dry) found nothing.
    return reclaim_passes_ >= from + 2 && reclaim_idle_;
  });
}

}  // namespace tw::store
