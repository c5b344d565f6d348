// StoreImpl::Put: admission checks, reserving the key, filling the record in DRAM or a bounce
// buffer, and WriteRecord (allocate, write and commit a record on NVMe).
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
    if (nvme_ && (disk || !fits_dram) && !admission_.Admit(tag, len)) {
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
        AttachDram(*again, info.key, dram_off, len);
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
