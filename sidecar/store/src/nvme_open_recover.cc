// NvmeEngine: opening a path set (probe, format, or recover the committed records from the
// summaries and the journal). Sealing and checkpoints are in nvme_seal_checkpoint.cc, the rest
// of the engine in nvme_engine.cc.
#include <algorithm>
#include <random>
#include <tuple>
#include <unordered_map>

#include "aligned_buffer.h"
#include "nvme_engine.h"
#include "record_format.h"
#include "tw/common/crc32c.h"
#include "tw/common/keys.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"

namespace tw::store {
namespace {

constexpr uint64_t kMiB = 1 << 20;
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
  const NvmeOptions& c = o.config;
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
  e->track_reads_ = o.config.reclaim == ReclaimOrder::kLru;
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
      if (Status geometry = ValidateSuperblock(sb, devs[i]->size()); !geometry.ok()) {
        return geometry.WithPrefix(path);
      }
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
  std::vector<SummaryEntry> tombstones;
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
      if (e.tombstone()) {
        if (e.region == r && e.epoch == eff[r] &&
            (e.kind == EntryKind::kDeleteKey || e.kind == EntryKind::kEvictNamespace)) {
          tombstones.push_back(e);
        }
        continue;
      }
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
  // Tombstones hide the records they cover (older ones of a deleted key or of an evicted
  // namespace) and stay on media themselves.
  if (!tombstones.empty()) {
    // A crash between a seal and its checkpoint leaves the sealed entries in the journal too.
    auto rank = [](const SummaryEntry& e) {
      return std::tie(e.region, e.seq, e.kind, e.key, e.ns);
    };
    std::sort(tombstones.begin(), tombstones.end(),
              [&](const SummaryEntry& a, const SummaryEntry& b) { return rank(a) < rank(b); });
    tombstones.erase(std::unique(tombstones.begin(), tombstones.end(),
                                 [&](const SummaryEntry& a, const SummaryEntry& b) {
                                   return rank(a) == rank(b);
                                 }),
                     tombstones.end());
    std::unordered_map<Key, uint64_t, KeyHash> key_dead, ns_dead;
    for (const SummaryEntry& t : tombstones) {
      auto& m = t.kind == EntryKind::kDeleteKey ? key_dead : ns_dead;
      uint64_t& at = m[t.kind == EntryKind::kDeleteKey ? t.key : t.ns];
      at = std::max(at, t.seq);
    }
    for (auto it = best.begin(); it != best.end();) {
      auto k = key_dead.find(it->second.key);
      auto n = ns_dead.find(it->second.ns);
      bool dead = (k != key_dead.end() && it->second.seq < k->second) ||
                  (n != ns_dead.end() && it->second.seq < n->second);
      it = dead ? best.erase(it) : std::next(it);
    }
    for (const SummaryEntry& t : tombstones) kept[t.region].push_back(t);
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
    R.span = std::max<uint32_t>(1, uint32_t((end + sb_.region_size - 1) / sb_.region_size));
    R.seal_seq = newest;
    for (uint32_t i = 1; i < R.span; ++i) {
      regions_[r + i].state = RState::kCont;
      regions_[r + i].owner = r;
    }
  }
  seq_ = max_seq + 1;
  seal_clock_ = seq_;  // regions sealed from now on are younger than every recovered one
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
  TW_LOG(kInfo, "recovered store",
         {{"records", n},
          {"tombstones", uint64_t(tombstones.size())},
          {"journal_blocks", uint64_t(pos)}});
  return OkStatus();
}

}  // namespace tw::store
