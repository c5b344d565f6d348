#include "nvme_engine.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <unordered_map>

#include "aligned_buffer.h"
#include "record_format.h"
#include "tw/common/crc32c.h"
#include "tw/common/keys.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"

namespace tw::store {
namespace {

constexpr uint64_t kMiB = 1 << 20;
// Longest run a region may grow into (bounds the unit of reclaim).
constexpr uint32_t kMaxRunRegions = 4;

uint32_t MaxEntries(uint64_t region_size) {
  return uint32_t(std::clamp<uint64_t>(region_size / (32 * 1024), 16, 4096));
}

struct DeviceProbe {
  SuperblockCheck check = SuperblockCheck::kZero;
  Superblock sb;
};

// Classifies a path by its superblock copies and its first MiB.
StatusOr<DeviceProbe> Probe(Device& d) {
  AlignedBuffer head(kReservedHead, false);
  if (!head.data()) return ResourceExhaustedError("out of memory");
  TW_RETURN_IF_ERROR(d.Read(0, head.data(), std::min<uint64_t>(kReservedHead, d.size())));
  DeviceProbe p;
  Superblock a, b;
  SuperblockCheck ca = DecodeSuperblock(head.data(), &a);
  SuperblockCheck cb = DecodeSuperblock(head.data() + kBlock, &b);
  if (ca == SuperblockCheck::kValid || cb == SuperblockCheck::kValid) {
    p.check = SuperblockCheck::kValid;
    if (ca == SuperblockCheck::kValid && cb == SuperblockCheck::kValid) {
      if (a.store_id != b.store_id) {
        p.sb = a.generation >= b.generation ? a : b;  // a re-format left an old copy
      } else {
        p.sb = a.generation >= b.generation ? a : b;
      }
    } else {
      p.sb = ca == SuperblockCheck::kValid ? a : b;
    }
    return p;
  }
  if (ca == SuperblockCheck::kVersion || cb == SuperblockCheck::kVersion) {
    p.check = SuperblockCheck::kVersion;
    return p;
  }
  for (uint64_t i = 0; i < std::min<uint64_t>(kReservedHead, d.size()); ++i) {
    if (head.data()[i] != 0) {
      p.check = SuperblockCheck::kForeign;
      return p;
    }
  }
  p.check = SuperblockCheck::kZero;
  return p;
}

}  // namespace

StatusOr<std::unique_ptr<NvmeEngine>> NvmeEngine::Open(const Options& o,
                                                       std::vector<SummaryEntry>* recovered) {
  const config::NvmeConfig& c = o.config;
  if (c.paths.empty()) return InvalidArgumentError("nvme.paths: no data path");
  if (!o.factory) return InvalidArgumentError("no device factory");
  std::vector<std::unique_ptr<Device>> devs;
  std::vector<DeviceProbe> probes;
  for (const auto& p : c.paths) {
    TW_ASSIGN_OR_RETURN(std::unique_ptr<Device> d, o.factory->Open(p, c.queue_depth));
    if (d->size() < 4 * kReservedHead) {
      return InvalidArgumentError(StrCat(p.path, ": too small (", d->size(), " bytes)"));
    }
    TW_ASSIGN_OR_RETURN(DeviceProbe pr, Probe(*d));
    probes.push_back(pr);
    devs.push_back(std::move(d));
  }
  std::unique_ptr<NvmeEngine> e(new NvmeEngine());
  e->on_lost_ = o.on_lost;
  bool all_zero = true, any_foreign = false, any_version = false, any_ours = false;
  for (size_t i = 0; i < probes.size(); ++i) {
    all_zero &= probes[i].check == SuperblockCheck::kZero;
    any_foreign |= probes[i].check == SuperblockCheck::kForeign;
    any_version |= probes[i].check == SuperblockCheck::kVersion;
    any_ours |= probes[i].check == SuperblockCheck::kValid;
  }
  bool format = all_zero || c.force_format;
  if (!format) {
    for (size_t i = 0; i < probes.size(); ++i) {
      const std::string& path = c.paths[i].path;
      if (probes[i].check == SuperblockCheck::kVersion) {
        return FailedPreconditionError(StrCat(path,
                                              ": store of an unknown format version (this "
                                              "build reads version ",
                                              kFormatVersion, ")"));
      }
      if (probes[i].check == SuperblockCheck::kForeign) {
        return FailedPreconditionError(StrCat(path,
                                              ": holds data that is neither a token "
                                              "warehouse store nor zeros; refusing to format "
                                              "it without nvme.force_format"));
      }
      if (probes[i].check == SuperblockCheck::kZero) {
        return FailedPreconditionError(StrCat(path,
                                              ": empty, but the other paths hold a "
                                              "store; refusing to mix (force_format to "
                                              "start over)"));
      }
      const Superblock& sb = probes[i].sb;
      if (sb.store_id != probes[0].sb.store_id || sb.device_index != i ||
          sb.device_count != probes.size()) {
        return FailedPreconditionError(StrCat(path,
                                              ": belongs to another store or is listed "
                                              "in a different order (device ",
                                              sb.device_index, " of ", sb.device_count, ")"));
      }
    }
    (void)any_foreign;
    (void)any_version;
    (void)any_ours;
    e->sb_ = probes[0].sb;
    e->volume_ = std::make_unique<StripedVolume>(std::move(devs), e->sb_.data_offset,
                                                 e->sb_.per_device_data, e->sb_.stripe_unit);
    e->dense_bytes_ = AlignUp(uint64_t(e->sb_.max_entries) * kEntryBytes, kBlock);
    TW_RETURN_IF_ERROR(e->Recover(recovered));
  } else {
    uint64_t min_cap = UINT64_MAX;
    for (auto& d : devs) min_cap = std::min(min_cap, d->size());
    Superblock& sb = e->sb_;
    sb.device_count = uint32_t(devs.size());
    sb.region_size = std::max<uint64_t>(AlignUp(c.region_size, kBlock), kBlock * 4);
    sb.stripe_unit = std::max<uint64_t>(AlignUp(c.stripe_unit, kBlock), kBlock);
    sb.max_entries = MaxEntries(sb.region_size);
    sb.journal_blocks = sb.max_entries + 8;
    e->dense_bytes_ = AlignUp(uint64_t(sb.max_entries) * kEntryBytes, kBlock);
    uint64_t n = devs.size();
    uint64_t est_regions = n * (min_cap - kReservedHead) / sb.region_size + 1;
    uint64_t meta = est_regions * (kBlock + e->dense_bytes_) + uint64_t(sb.journal_blocks) * kBlock;
    sb.header_off = kReservedHead;
    sb.dense_off = sb.header_off + est_regions * kBlock;
    sb.journal_off = sb.dense_off + est_regions * e->dense_bytes_;
    sb.data_offset = AlignUp(kReservedHead + meta, kMiB);
    if (sb.data_offset >= min_cap) {
      return InvalidArgumentError("nvme: paths too small for their metadata");
    }
    sb.per_device_data = (min_cap - sb.data_offset) / sb.stripe_unit * sb.stripe_unit;
    uint64_t regions = n * sb.per_device_data / sb.region_size;
    if (regions < 3) {
      return InvalidArgumentError(StrCat("nvme: room for only ", regions,
                                         " regions; need at least 3 (capacity or region_size)"));
    }
    sb.region_count = uint32_t(std::min<uint64_t>(regions, est_regions));
    e->volume_ = std::make_unique<StripedVolume>(std::move(devs), sb.data_offset,
                                                 sb.per_device_data, sb.stripe_unit);
    TW_RETURN_IF_ERROR(e->Format(o));
  }
  e->committer_ = std::thread([p = e.get()] { p->CommitterLoop(); });
  return e;
}

Status NvmeEngine::Format(const Options& o) {
  std::random_device rd;
  for (auto& b : sb_.store_id) b = uint8_t(rd());
  sb_.generation = 1;
  sb_.journal_base = 1;
  sb_.seq_floor = 1;
  AlignedBuffer blocks(2 * kBlock);
  for (size_t i = 0; i < volume_->device_count(); ++i) {
    Superblock s = sb_;
    s.device_index = uint32_t(i);
    s.generation = 0;
    EncodeSuperblock(s, blocks.data());
    s.generation = 1;
    EncodeSuperblock(s, blocks.data() + kBlock);
    TW_RETURN_IF_ERROR(volume_->device(i).Write(0, blocks.data(), 2 * kBlock));
  }
  TW_RETURN_IF_ERROR(volume_->Sync());
  regions_.assign(sb_.region_count, Region{});
  seq_ = 2;
  TW_LOG(kInfo, "formatted store",
         {{"paths", uint64_t(o.config.paths.size())},
          {"regions", uint64_t(sb_.region_count)},
          {"region_size", sb_.region_size}});
  return OkStatus();
}

Status NvmeEngine::Recover(std::vector<SummaryEntry>* recovered) {
  const uint32_t nr = sb_.region_count;
  Device& d0 = volume_->device(0);
  AlignedBuffer headers(uint64_t(nr) * kBlock, false);
  if (!headers.data()) return ResourceExhaustedError("out of memory");
  TW_RETURN_IF_ERROR(d0.Read(sb_.header_off, headers.data(), headers.size()));
  std::vector<RegionHeader> hdr(nr);
  std::vector<IoRequest> dense_reads;
  std::vector<uint32_t> dense_regions;
  std::vector<AlignedBuffer> dense_bufs;
  for (uint32_t r = 0; r < nr; ++r) {
    hdr[r] = DecodeRegionHeader(headers.data() + uint64_t(r) * kBlock, sb_.store_id);
    if (hdr[r].state != RegionState::kInvalid && hdr[r].region != r) {
      hdr[r].state = RegionState::kInvalid;
    }
    if (hdr[r].state == RegionState::kSealed && hdr[r].count > 0 &&
        hdr[r].count <= sb_.max_entries) {
      uint64_t len = AlignUp(uint64_t(hdr[r].count) * kEntryBytes, kBlock);
      dense_bufs.emplace_back(len, false);
      dense_reads.push_back(
          {false, sb_.dense_off + uint64_t(r) * dense_bytes_, len, dense_bufs.back().data()});
      dense_regions.push_back(r);
    }
  }
  TW_RETURN_IF_ERROR(d0.Submit(dense_reads));
  // Dense summaries.
  std::vector<std::vector<SummaryEntry>> dense(nr);
  std::vector<bool> dense_ok(nr, false);
  for (size_t i = 0; i < dense_regions.size(); ++i) {
    uint32_t r = dense_regions[i];
    const uint8_t* p = dense_bufs[i].data();
    if (Crc32c(p, uint64_t(hdr[r].count) * kEntryBytes) != hdr[r].entries_crc) continue;
    dense_ok[r] = true;
    for (uint32_t k = 0; k < hdr[r].count; ++k)
      dense[r].push_back(DecodeEntry(p + k * kEntryBytes));
  }
  // Journal since the last checkpoint: consecutive valid blocks from position 0.
  std::vector<std::vector<SummaryEntry>> journal(nr);
  uint32_t pos = 0;
  const uint32_t chunk_blocks = 64;
  AlignedBuffer jbuf(uint64_t(chunk_blocks) * kBlock, false);
  bool more = true;
  while (more && pos < sb_.journal_blocks) {
    uint32_t n = std::min(chunk_blocks, sb_.journal_blocks - pos);
    TW_RETURN_IF_ERROR(
        d0.Read(sb_.journal_off + uint64_t(pos) * kBlock, jbuf.data(), uint64_t(n) * kBlock));
    for (uint32_t i = 0; i < n; ++i) {
      auto es = DecodeJournalBlock(jbuf.data() + uint64_t(i) * kBlock, sb_.journal_base + pos,
                                   sb_.store_id);
      if (!es) {
        more = false;
        break;
      }
      for (const SummaryEntry& e : *es) {
        if (e.region < nr) journal[e.region].push_back(e);
      }
      ++pos;
    }
  }
  // Each region's newest epoch decides which of its records are current.
  uint64_t max_seq = sb_.seq_floor;
  std::vector<uint64_t> eff(nr, 0);
  for (uint32_t r = 0; r < nr; ++r) {
    if (hdr[r].state != RegionState::kInvalid) eff[r] = hdr[r].epoch;
    for (const auto& e : journal[r]) eff[r] = std::max(eff[r], e.epoch);
    max_seq = std::max(max_seq, eff[r]);
  }
  regions_.assign(nr, Region{});
  std::unordered_map<Key, SummaryEntry, KeyHash> best;
  std::vector<bool> needs_seal(nr, false);
  std::vector<std::vector<SummaryEntry>> kept(nr);
  for (uint32_t r = 0; r < nr; ++r) {
    std::vector<SummaryEntry> cands;
    if (dense_ok[r] && hdr[r].epoch == eff[r]) cands = dense[r];
    bool from_journal = false;
    for (const auto& e : journal[r]) {
      if (e.epoch == eff[r]) {
        cands.push_back(e);
        from_journal = true;
      }
    }
    for (const SummaryEntry& e : cands) {
      max_seq = std::max(max_seq, e.seq);
      if (e.region != r || e.offset < uint64_t(r) * sb_.region_size) continue;
      uint64_t start = e.offset - uint64_t(r) * sb_.region_size;
      uint64_t len = uint64_t(e.record_4k) * kBlock;
      if (e.epoch != eff[r] || e.seq <= e.epoch || len == 0) continue;
      uint32_t span = uint32_t((start + len + sb_.region_size - 1) / sb_.region_size);
      bool ok = r + span <= nr;
      for (uint32_t i = 1; ok && i < span; ++i) {
        // A region the record covers must still be as it was when the record was written:
        // opened before it (at an epoch older than the record) and not reused since.
        ok = hdr[r + i].state == RegionState::kOpen && hdr[r + i].epoch < e.seq;
      }
      if (!ok) continue;
      auto [it, inserted] = best.try_emplace(e.key, e);
      if (!inserted && it->second.seq < e.seq) it->second = e;
    }
    if (from_journal) needs_seal[r] = true;
  }
  // Rebuild region state from the winning records.
  for (auto& [key, e] : best) kept[e.region].push_back(e);
  for (uint32_t r = 0; r < nr; ++r) {
    if (kept[r].empty()) continue;
    Region& R = regions_[r];
    uint64_t end = 0;
    uint64_t newest = 0;
    for (const auto& e : kept[r]) {
      end =
          std::max(end, e.offset - uint64_t(r) * sb_.region_size + uint64_t(e.record_4k) * kBlock);
      newest = std::max(newest, e.seq);
    }
    R.state = RState::kSealed;
    R.epoch = eff[r];
    R.span = uint32_t((end + sb_.region_size - 1) / sb_.region_size);
    R.seal_seq = newest;
    for (uint32_t i = 1; i < R.span; ++i) {
      regions_[r + i].state = RState::kCont;
      regions_[r + i].owner = r;
    }
  }
  seq_ = max_seq + 1;
  // Records found only in the journal get their dense summary now, so the journal can restart.
  for (uint32_t r = 0; r < nr; ++r) {
    if (!kept[r].empty() && (needs_seal[r] || !dense_ok[r] || hdr[r].epoch != eff[r] ||
                             kept[r].size() != dense[r].size())) {
      TW_RETURN_IF_ERROR(SealRegion(r, kept[r], eff[r]));
    }
  }
  sb_.journal_base += 1;
  TW_RETURN_IF_ERROR(WriteCheckpoint());
  uint64_t n = 0;
  for (auto& [key, e] : best) {
    recovered->push_back(e);
    ++n;
  }
  TW_LOG(kInfo, "recovered store", {{"records", n}, {"journal_blocks", uint64_t(pos)}});
  return OkStatus();
}

Status NvmeEngine::SealRegion(uint32_t r, const std::vector<SummaryEntry>& entries,
                              uint64_t epoch) {
  if (entries.size() > sb_.max_entries) return InternalError("region summary overflow");
  uint64_t len = AlignUp(std::max<uint64_t>(entries.size(), 1) * kEntryBytes, kBlock);
  AlignedBuffer buf(len);
  for (size_t i = 0; i < entries.size(); ++i) EncodeEntry(entries[i], buf.data() + i * kEntryBytes);
  RegionHeader h;
  h.state = RegionState::kSealed;
  h.region = r;
  h.epoch = epoch;
  h.count = uint32_t(entries.size());
  h.entries_crc = Crc32c(buf.data(), entries.size() * kEntryBytes);
  AlignedBuffer hb(kBlock);
  EncodeRegionHeader(h, sb_.store_id, hb.data());
  // Summary and header in one batch and one sync: if only the header lands, its entries CRC
  // fails and recovery falls back to the journal, which is restarted only after this.
  IoRequest ios[2] = {{true, sb_.dense_off + uint64_t(r) * dense_bytes_, len, buf.data()},
                      {true, sb_.header_off + uint64_t(r) * kBlock, kBlock, hb.data()}};
  Device& d0 = volume_->device(0);
  TW_RETURN_IF_ERROR(d0.Submit(ios));
  return d0.Sync();
}

Status NvmeEngine::WriteCheckpoint() {
  {
    std::lock_guard<std::mutex> l(mu_);
    sb_.seq_floor = seq_;
  }
  sb_.generation += 1;
  Superblock s = sb_;
  s.device_index = 0;
  AlignedBuffer b(kBlock);
  EncodeSuperblock(s, b.data());
  Device& d0 = volume_->device(0);
  TW_RETURN_IF_ERROR(d0.Write((s.generation % 2) * kBlock, b.data(), kBlock));
  return d0.Sync();
}

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
  const uint64_t rs = sb_.region_size;
  std::lock_guard<std::mutex> al(alloc_mu_);
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
    uint32_t span = uint32_t((length + rs - 1) / rs);
    if (span > sb_.region_count) {
      return InvalidArgumentError(StrCat("record of ", length, " bytes exceeds the NVMe tier"));
    }
    // A prepared region if one will do, else first fit of `span` consecutive free regions.
    int64_t first = -1;
    for (uint32_t r = 0; span == 1 && r < sb_.region_count && first < 0; ++r) {
      if (regions_[r].state == RState::kPrepared) first = r;
    }
    for (uint32_t r = 0; r + span <= sb_.region_count && first < 0; ++r) {
      bool ok = true;
      for (uint32_t i = 0; i < span && ok; ++i) ok = Usable(regions_[r + i].state);
      if (ok) first = r;
    }
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
  std::unique_lock<std::mutex> l(mu_);
  uint32_t have = 0;
  for (const Region& r : regions_) have += r.state == RState::kPrepared;
  for (uint32_t r = 0; r < regions_.size() && have < want && !stop_; ++r) {
    if (regions_[r].state != RState::kFree) continue;
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
  std::shared_ptr<std::promise<Status>> done;
  std::future<Status> f;
  if (wait) {
    done = std::make_shared<std::promise<Status>>();
    f = done->get_future();
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) {
      regions_[a.region].inflight--;
      return CancelledError("store closing");
    }
    pending_.push_back({entry, a.region, done});
  }
  cv_.notify_all();
  if (!wait) return OkStatus();
  return f.get();
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

std::vector<uint32_t> NvmeEngine::ReclaimCandidates(config::ReclaimOrder order) const {
  std::vector<std::pair<uint64_t, uint32_t>> v;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (uint32_t r = 0; r < regions_.size(); ++r) {
      const Region& R = regions_[r];
      if (R.state != RState::kSealed) continue;
      v.push_back({order == config::ReclaimOrder::kFifo ? R.seal_seq : R.last_access, r});
    }
  }
  std::sort(v.begin(), v.end());
  std::vector<uint32_t> out;
  for (auto& [k, r] : v) out.push_back(r);
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

void NvmeEngine::ReleaseRegion(uint32_t region) {
  std::lock_guard<std::mutex> l(mu_);
  Region& R = regions_[region];
  if (R.state != RState::kSealed) return;
  uint32_t span = R.span;
  for (uint32_t i = 0; i < span && region + i < regions_.size(); ++i) {
    regions_[region + i] = Region{};
  }
  cv_.notify_all();
}

uint32_t NvmeEngine::HeadOf(uint64_t offset) const {
  std::lock_guard<std::mutex> l(mu_);
  uint32_t r = RegionOf(offset);
  if (r < regions_.size() && regions_[r].state == RState::kCont) return regions_[r].owner;
  return r;
}

void NvmeEngine::Touch(uint64_t offset) {
  std::lock_guard<std::mutex> l(mu_);
  uint32_t r = RegionOf(offset);
  if (r < regions_.size() && regions_[r].state == RState::kCont) r = regions_[r].owner;
  if (r < regions_.size()) regions_[r].last_access = ++access_clock_;
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
