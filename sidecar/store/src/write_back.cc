// Write-back: the background thread that writes memory-durability chunks from DRAM to NVMe,
// and OnLost(), which requeues (or drops) a chunk whose commit failed.
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
    if (!e || e->doomed || !e->dirty || !e->ready || !e->in_dram) {
      cv_.notify_all();  // Close() waits for the queue to drain
      continue;
    }
    const uint64_t len = e->record_len();
    if (!admission_.Admit(k, len)) {
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

}  // namespace tw::store
