// Opening and closing the Store: building the index from what the NVMe tier recovered,
// starting the write-back and reclaim threads, and the clean close.
#include <chrono>

#include "store_impl.h"
#include "tw/common/log.h"

namespace tw::store {

StatusOr<std::unique_ptr<Store>> Store::Open(const Options& options) {
  return StoreImpl::Create(options);
}

StoreImpl::StoreImpl(const Options& o) : opts_(o), admission_(o.admission, o.now) {}

StatusOr<std::unique_ptr<Store>> StoreImpl::Create(const Options& options) {
  TW_RETURN_IF_ERROR(options.Validate());
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
  writeback_ = std::thread([this] { WritebackLoop(); });
  reclaim_ = std::thread([this] { ReclaimLoop(); });
  return OkStatus();
}

Status StoreImpl::Close(std::chrono::nanoseconds grace) {
  const auto deadline = Clock::now() + grace;
  std::unique_lock<std::mutex> l(mu_);
  if (closed_) return OkStatus();
  closing_ = true;
  // Write back what we can within the grace period. The write-back thread signals cv_ after
  // every chunk it takes off the queue, so this returns as soon as the queue is drained (at
  // once when it is empty), or at the deadline.
  work_cv_.notify_all();
  cv_.wait_until(l, deadline, [&] { return writeback_q_.empty() && !wb_busy_; });
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
