// The Store's read path: get (with its namespace check and whole-chunk mode), promotion of
// chunks read from NVMe into DRAM, and the index-only peek.
#include <algorithm>
#include <cstring>

#include "aligned_buffer.h"
#include "fast_copy.h"
#include "store_impl.h"
#include "tw/common/crc32c.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"

namespace tw::store {
namespace {

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

MissReason StoreImpl::AbsentReason(Tag tag) const {
  return ghost_.contains(tag) ? MissReason::kEvicted : MissReason::kAbsent;
}

void StoreImpl::CountMiss(MissReason r) {
  stats_.dram.misses_by_reason[size_t(r)]++;
  if (nvme_) stats_.nvme.misses_by_reason[size_t(r)]++;
}

StoreImpl::ReadPlan StoreImpl::PlanRead(Tag tag, Entry& e) {
  ReadPlan p;
  p.record_len = e.record_len();
  p.header_len = e.header_len();
  if (e.in_dram) {
    const uint32_t id = DramId(tag);
    p.tier = Tier::kDram;
    p.dram = dram_->base() + dram_objs_[id].off;
    dram_->Touch(id);
  } else {
    p.tier = Tier::kNvme;
    p.nvme_off = e.nvme_off();
    nvme_->Touch(p.nvme_off);
  }
  e.hit = true;
  e.qref = true;
  Pin(tag, e);
  return p;
}

GetResult StoreImpl::Get(const Key& key, std::span<const ScatterEntry> ranges, Deadline deadline,
                         LeaseId lease) {
  GetOptions o;
  o.deadline = deadline;
  o.lease = lease;
  return Get(key, ranges, o);
}

std::optional<ChunkPeek> StoreImpl::Peek(const Key& key) {
  std::lock_guard<std::mutex> l(mu_);
  const Tag tag = TagOf(key);
  Entry* e = Find(tag);
  if (!e || !e->ready || e->doomed) return std::nullopt;
  if (e->in_dram && dram_objs_[DramId(tag)].key != key) return std::nullopt;
  ChunkPeek p;
  p.namespace_digest = ns_[e->ns].digest;
  p.tier = e->in_dram ? Tier::kDram : Tier::kNvme;
  p.record_bytes = e->record_len();
  return p;
}

GetResult StoreImpl::Get(const Key& key, std::span<const ScatterEntry> ranges,
                         const GetOptions& o) {
  GetResult res;
  ReadPlan p;
  const Tag tag = TagOf(key);
  {
    std::lock_guard<std::mutex> l(mu_);
    Entry* e = Find(tag);
    const bool visible = e && e->ready && !e->doomed;
    // Another namespace's chunk reads as absent; so does another key with this tag in DRAM.
    const bool other =
        visible && ((o.namespace_digest && ns_[e->ns].digest != *o.namespace_digest) ||
                    (e->in_dram && dram_objs_[DramId(tag)].key != key));
    if (!visible || other) {
      res.miss = other ? MissReason::kAbsent : AbsentReason(tag);
      CountMiss(res.miss);
      return res;
    }
    if (Clock::now() >= o.deadline) {
      res.miss = MissReason::kDeadline;
      CountMiss(res.miss);
      return res;
    }
    p = PlanRead(tag, *e);
    if (p.tier == Tier::kNvme && dram_) {
      p.promote = e->nvme_read;  // the second read from NVMe
      e->nvme_read = true;
    }
  }
  uint64_t bytes = 0;
  HeaderRead hr;
  RecordLayout layout;
  std::vector<ScatterEntry> whole;
  MissReason miss = ReadHeaderFor(key, p, &hr);
  if (miss == MissReason::kNone) {
    layout = ComputeLayout(hr.h.header_len, hr.h.info.segment_sizes);
    res.segment_sizes = layout.segment_sizes;
    if (o.whole_chunk) {
      if (!ranges.empty() || (layout.value_size > 0 && !o.dest)) {
        res.error = InvalidArgumentError("whole-chunk get: ranges given or no destination");
      } else if (layout.value_size > o.capacity) {
        res.error = InvalidArgumentError(StrCat("whole-chunk get: value of ", layout.value_size,
                                                " bytes does not fit ", o.capacity, " bytes"));
      } else {
        uint64_t at = 0;
        for (uint32_t s = 0; s < layout.segment_sizes.size(); ++s) {
          whole.push_back({s, 0, layout.segment_sizes[s], static_cast<uint8_t*>(o.dest) + at});
          at += layout.segment_sizes[s];
        }
        ranges = whole;
      }
    } else if (!InBounds(layout, ranges)) {
      res.error = InvalidArgumentError("get: a range lies outside the stored value");
    }
    if (res.error.ok()) {
      miss = p.tier == Tier::kDram ? ReadDram(p, layout, ranges, &bytes)
                                   : ReadNvme(p, hr.h, layout, ranges, o.deadline, &bytes);
    }
  }
  if (miss == MissReason::kNone && res.error.ok() && p.promote) {
    Promote(tag, key, p, hr, layout, ranges);
  }
  std::lock_guard<std::mutex> l(mu_);
  Unpin(tag);
  TierStats& t = p.tier == Tier::kDram ? stats_.dram : stats_.nvme;
  if (!res.error.ok()) {
    // The request does not fit the stored value: not a device error, not counted.
    res.miss = MissReason::kIoError;
    return res;
  }
  if (miss == MissReason::kNone) {
    t.hits++;
    t.bytes_read += bytes;
    if (p.tier == Tier::kNvme) stats_.dram.misses_by_reason[size_t(MissReason::kAbsent)]++;
    res.tier = p.tier;
    res.bytes = bytes;
    return res;
  }
  res.segment_sizes.clear();
  if (miss == MissReason::kAbsent) {
    CountMiss(miss);  // another key with this tag
    res.miss = miss;
    return res;
  }
  t.misses_by_reason[size_t(miss)]++;
  if (miss == MissReason::kCorrupt) {
    t.corrupt++;
    TW_LOG(kWarn, "dropping a corrupt chunk", {{"key", key.Hex()}, {"tier", ToString(p.tier)}});
    RemoveEntry(tag, false);
  } else if (miss == MissReason::kIoError) {
    t.io_errors++;
  }
  res.miss = miss;
  return res;
}

void StoreImpl::Promote(Tag tag, const Key& key, const ReadPlan& p, const HeaderRead& hr,
                        const RecordLayout& l, std::span<const ScatterEntry> ranges) {
  // Only when every segment was read whole into one range: its bytes are all at hand.
  std::vector<const ScatterEntry*> src(l.segment_sizes.size(), nullptr);
  for (const ScatterEntry& r : ranges) {
    if (r.offset == 0 && r.length == l.segment_sizes[r.segment]) src[r.segment] = &r;
  }
  for (size_t s = 0; s < src.size(); ++s) {
    if (!src[s] && l.segment_sizes[s] > 0) return;
  }
  if (!hr.raw.data()) return;
  const uint64_t len = l.record_len;
  uint64_t off;
  {
    std::lock_guard<std::mutex> g(mu_);
    Entry* e = Find(tag);
    if (!e || e->doomed || e->in_dram || e->nvme_off() != p.nvme_off || closing_) return;
    // Room without evicting anything: below the high watermark after the copy.
    if (double(dram_->used() + len) > opts_.dram.high_watermark * double(dram_->capacity())) {
      return;
    }
    auto a = dram_->Allocate(len);
    if (!a) return;
    off = *a;
  }
  // The caller's memory may change under us (a shared arena): copy, then check the copy.
  uint8_t* rec = dram_->base() + off;
  std::memcpy(rec, hr.raw.data(), l.header_len);
  bool good = true;
  for (size_t s = 0; s < src.size() && good; ++s) {
    const uint64_t n = l.segment_sizes[s];
    if (n == 0) continue;
    CopyLarge(rec + l.segment_offsets[s], src[s]->addr, n);
    good = Crc32c(rec + l.segment_offsets[s], n) == hr.h.segment_crcs[s];
  }
  std::lock_guard<std::mutex> g(mu_);
  Entry* e = Find(tag);
  if (!good || !e || e->doomed || e->in_dram || e->nvme_off() != p.nvme_off) {
    dram_->Free(off, len);
    return;
  }
  AttachDram(*e, key, off, len);
  dram_->Insert(DramId(tag), len, false);
  stats_.dram.bytes_written += l.value_size;
  stats_.promotions++;
}

MissReason StoreImpl::ReadHeaderFor(const Key& key, const ReadPlan& p, HeaderRead* out) {
  StatusOr<RecordHeader> h = InternalError("unread");
  if (p.tier == Tier::kDram) {
    h = DecodeHeader(p.dram, p.header_len);
  } else {
    out->raw = AlignedBuffer(p.header_len, false);
    if (!out->raw.data()) return MissReason::kIoError;
    Status s = nvme_->Read(p.nvme_off, out->raw.data(), p.header_len);
    if (!s.ok()) return MissReason::kIoError;
    h = DecodeHeader(out->raw.data(), p.header_len);
  }
  if (!h.ok()) {
    return h.status().code() == StatusCode::kDataLoss ||
                   h.status().code() == StatusCode::kFailedPrecondition
               ? MissReason::kCorrupt
               : MissReason::kIoError;
  }
  // Another key with the same tag: a miss, and the stored chunk stays.
  if (h->info.key != key) return MissReason::kAbsent;
  out->h = std::move(*h);
  if (ComputeLayout(out->h.header_len, out->h.info.segment_sizes).record_len != p.record_len) {
    return MissReason::kCorrupt;
  }
  return MissReason::kNone;
}

StatusOr<RecordHeader> StoreImpl::ReadHeader(const ReadPlan& p) {
  if (p.tier == Tier::kDram) return DecodeHeader(p.dram, p.header_len);
  AlignedBuffer hb(p.header_len, false);
  if (!hb.data()) return ResourceExhaustedError("out of memory");
  TW_RETURN_IF_ERROR(nvme_->Read(p.nvme_off, hb.data(), p.header_len));
  return DecodeHeader(hb.data(), p.header_len);
}

MissReason StoreImpl::ReadDram(const ReadPlan& p, const RecordLayout& l,
                               std::span<const ScatterEntry> ranges, uint64_t* bytes) {
  for (const ScatterEntry& r : ranges) {
    CopyLarge(r.addr, p.dram + l.segment_offsets[r.segment] + r.offset, r.length);
    *bytes += r.length;
  }
  return MissReason::kNone;
}

MissReason StoreImpl::ReadNvme(const ReadPlan& p, const RecordHeader& h, const RecordLayout& l,
                               std::span<const ScatterEntry> ranges, Deadline deadline,
                               uint64_t* bytes) {
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
    if (Crc32c(src, l.segment_sizes[s]) != h.segment_crcs[s]) return MissReason::kCorrupt;
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
