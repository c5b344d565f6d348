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
    Key k = writeback_q_.front();
    writeback_q_.pop_front();
    Entry* e = Find(k);
    if (!e || e->doomed || !e->dirty || e->state != State::kReady || e->dram == kNoDram) {
      continue;
    }
    const uint64_t len = uint64_t(e->record_4k) * 4096;
    if (!Admit(k, len)) {
      e->dirty = false;
      e->unwritten = true;
      cv_.notify_all();
      continue;
    }
    Pin(*e);
    uint8_t* rec = dram_->base() + dram_objs_[e->dram].off;
    const uint64_t header_len = e->header_len;
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
               {{"key", k.Hex()}, {"error", a.status()}});
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
  Entry* e = Find(se.key);
  if (!e || e->nvme_off != se.offset) return;
  region_pins_[nvme_->HeadOf(e->nvme_off)] -= e->pins;
  e->nvme_off = kNoNvme;
  if (e->dram != kNoDram) {
    e->dirty = true;
    writeback_q_.push_back(se.key);
    work_cv_.notify_all();
  } else {
    RemoveEntry(se.key, false);
  }
}

std::vector<uint8_t> StoreImpl::ReclaimCosts() {
  const std::vector<uint32_t> heads = nvme_->RegionHeads();
  std::vector<uint8_t> cost(heads.size(), 0);
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [k, e] : index_) {
    if (e.nvme_off == kNoNvme || e.dram != kNoDram || e.doomed) continue;
    const uint32_t r = nvme_->RegionOf(e.nvme_off);
    if (r >= heads.size()) continue;
    uint8_t& c = cost[heads[r]];
    c = std::max<uint8_t>(c, e.disk ? 2 : 1);
  }
  return cost;
}

bool StoreImpl::ReclaimOne(const std::vector<uint8_t>& cost) {
  // The cheapest class goes first; within a class, the configured order (FIFO or LRU).
  std::vector<uint32_t> candidates = nvme_->ReclaimCandidates(opts_.nvme.reclaim);
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](uint32_t a, uint32_t b) { return cost[a] < cost[b]; });
  for (uint32_t r : candidates) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (region_pins_[r] > 0 || stop_) continue;
    }
    auto entries = nvme_->RegionEntries(r);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (region_pins_[r] > 0 || stop_) continue;
      std::vector<Key> keys;
      if (entries.ok()) {
        for (const SummaryEntry& se : *entries) {
          if (!se.tombstone()) keys.push_back(se.key);
        }
      } else {
        for (auto& [k, e] : index_) {
          if (e.nvme_off != kNoNvme && nvme_->HeadOf(e.nvme_off) == r) keys.push_back(k);
        }
      }
      for (const Key& k : keys) {
        Entry* e = Find(k);
        if (!e || e->nvme_off == kNoNvme || nvme_->HeadOf(e->nvme_off) != r) continue;
        if (e->dram != kNoDram) {
          // Still in DRAM: it loses its NVMe copy; one read since it was written earns it a
          // rewrite (reinsertion).
          e->nvme_off = kNoNvme;
          if (e->hit) {
            e->dirty = true;
            writeback_q_.push_back(k);
          }
          e->hit = false;
        } else {
          RemoveEntry(k, true);
          stats_.nvme.evictions++;
        }
      }
    }
    // No index entry points into the region any more, so nothing pins it: its header is
    // rewritten without the Store's lock.
    static const std::vector<SummaryEntry> kNone;
    Status s = nvme_->ReleaseRegion(r, entries.ok() ? *entries : kNone);
    if (!s.ok()) {
      TW_LOG(kWarn, "reclaim: region not released", {{"region", uint64_t(r)}, {"error", s}});
      continue;
    }
    std::lock_guard<std::mutex> l(mu_);
    cv_.notify_all();
    work_cv_.notify_all();
    return true;
  }
  return false;
}

void StoreImpl::TrimDram() {
  if (!dram_) return;
  const double cap = double(dram_->capacity());
  if (double(dram_->used()) <= opts_.dram.high_watermark * cap) return;
  while (double(dram_->used()) > opts_.dram.low_watermark * cap) {
    auto victim = dram_->PickVictim([&](uint32_t id) {
      const Entry* e = Find(dram_objs_[id].key);
      return e && e->pins == 0 && e->state == State::kReady && !e->dirty && !e->unwritten &&
             e->nvme_off != kNoNvme;
    });
    if (!victim) return;
    Entry* e = Find(dram_objs_[*victim].key);
    FreeDram(*e);  // demoted: the chunk stays on NVMe
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
    const std::vector<uint8_t> cost = ReclaimCosts();
    while (free < stop_at || wanted) {
      wanted = false;
      if (!ReclaimOne(cost)) break;
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
  for (auto& [k, e] : index_) left += e.dirty;
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
