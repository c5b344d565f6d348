#include "metadata_format.h"

#include <cstring>
#include <string_view>

#include "tw/common/crc32c.h"
#include "tw/common/strings.h"

namespace tw::store {
namespace {

constexpr char kSuperMagic[8] = {'T', 'W', 'S', 'T', 'O', 'R', 'E', '1'};
constexpr uint32_t kRegionMagic = 0x48525754;   // "TWRH"
constexpr uint32_t kJournalMagic = 0x424a5754;  // "TWJB"
constexpr uint8_t kFlagDisk = 1;                // summary entry flags

struct RawSuper {
  char magic[8];
  uint32_t version;
  uint32_t device_index;
  uint8_t store_id[16];
  uint32_t device_count;
  uint32_t region_count;
  uint64_t region_size;
  uint64_t stripe_unit;
  uint64_t data_offset;
  uint64_t per_device_data;
  uint32_t max_entries;
  uint32_t journal_blocks;
  uint64_t header_off;
  uint64_t dense_off;
  uint64_t journal_off;
  uint64_t generation;
  uint64_t journal_base;
  uint64_t seq_floor;
  uint32_t crc;
  uint32_t pad;
};

struct RawRegion {
  uint32_t magic;
  uint16_t version;
  uint16_t state;
  uint32_t region;
  uint32_t count;
  uint64_t epoch;
  uint32_t entries_crc;
  uint32_t crc;
  uint8_t store_id[16];
};

struct RawJournal {
  uint32_t magic;
  uint16_t version;
  uint16_t count;
  uint64_t seq;
  uint8_t store_id[16];
  uint32_t crc;  // over the whole block with this field zero
  uint8_t pad[kJournalHeaderBytes - 36];
};
static_assert(sizeof(RawJournal) == kJournalHeaderBytes);

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i]) return false;
  }
  return true;
}

}  // namespace

void EncodeSuperblock(const Superblock& sb, uint8_t* block) {
  std::memset(block, 0, kBlock);
  RawSuper r{};
  std::memcpy(r.magic, kSuperMagic, 8);
  r.version = sb.version;
  r.device_index = sb.device_index;
  std::memcpy(r.store_id, sb.store_id.data(), 16);
  r.device_count = sb.device_count;
  r.region_count = sb.region_count;
  r.region_size = sb.region_size;
  r.stripe_unit = sb.stripe_unit;
  r.data_offset = sb.data_offset;
  r.per_device_data = sb.per_device_data;
  r.max_entries = sb.max_entries;
  r.journal_blocks = sb.journal_blocks;
  r.header_off = sb.header_off;
  r.dense_off = sb.dense_off;
  r.journal_off = sb.journal_off;
  r.generation = sb.generation;
  r.journal_base = sb.journal_base;
  r.seq_floor = sb.seq_floor;
  r.crc = 0;
  r.crc = Crc32c(&r, sizeof r);
  std::memcpy(block, &r, sizeof r);
}

SuperblockCheck DecodeSuperblock(const uint8_t* block, Superblock* out) {
  if (AllZero(block, kBlock)) return SuperblockCheck::kZero;
  RawSuper r;
  std::memcpy(&r, block, sizeof r);
  if (std::memcmp(r.magic, kSuperMagic, 8) != 0) return SuperblockCheck::kForeign;
  uint32_t crc = r.crc;
  r.crc = 0;
  if (Crc32c(&r, sizeof r) != crc) return SuperblockCheck::kForeign;
  if (r.version != kFormatVersion) return SuperblockCheck::kVersion;
  Superblock& sb = *out;
  sb.version = r.version;
  sb.device_index = r.device_index;
  std::memcpy(sb.store_id.data(), r.store_id, 16);
  sb.device_count = r.device_count;
  sb.region_count = r.region_count;
  sb.region_size = r.region_size;
  sb.stripe_unit = r.stripe_unit;
  sb.data_offset = r.data_offset;
  sb.per_device_data = r.per_device_data;
  sb.max_entries = r.max_entries;
  sb.journal_blocks = r.journal_blocks;
  sb.header_off = r.header_off;
  sb.dense_off = r.dense_off;
  sb.journal_off = r.journal_off;
  sb.generation = r.generation;
  sb.journal_base = r.journal_base;
  sb.seq_floor = r.seq_floor;
  return SuperblockCheck::kValid;
}

Status ValidateSuperblock(const Superblock& sb, uint64_t device_size) {
  using u128 = unsigned __int128;  // no sum or product below can wrap
  auto bad = [](std::string_view what) { return DataLossError(StrCat("superblock: ", what)); };
  if (sb.device_count == 0 || sb.device_index >= sb.device_count) {
    return bad(StrCat("device ", sb.device_index, " of ", sb.device_count));
  }
  if (sb.region_size < 4 * kBlock || sb.region_size % kBlock != 0) {
    return bad(StrCat("region size ", sb.region_size));
  }
  if (sb.stripe_unit < kBlock || sb.stripe_unit % kBlock != 0) {
    return bad(StrCat("stripe unit ", sb.stripe_unit));
  }
  if (sb.region_count == 0 || sb.max_entries == 0 || sb.journal_blocks == 0) {
    return bad("zero regions, summary entries or journal blocks");
  }
  if (sb.header_off < kReservedHead || sb.header_off % kBlock != 0 || sb.dense_off % kBlock != 0 ||
      sb.journal_off % kBlock != 0 || sb.data_offset % kBlock != 0) {
    return bad("metadata areas not 4 KiB aligned or over the superblocks");
  }
  const u128 dense = (u128(sb.max_entries) * kEntryBytes + kBlock - 1) / kBlock * kBlock;
  if (u128(sb.header_off) + u128(sb.region_count) * kBlock > sb.dense_off ||
      u128(sb.dense_off) + u128(sb.region_count) * dense > sb.journal_off ||
      u128(sb.journal_off) + u128(sb.journal_blocks) * kBlock > sb.data_offset) {
    return bad("metadata areas overlap");
  }
  if (u128(sb.data_offset) + sb.per_device_data > device_size) {
    return bad(StrCat("data area ends past the path's ", device_size, " bytes"));
  }
  if (sb.per_device_data % sb.stripe_unit != 0 ||
      u128(sb.region_count) * sb.region_size > u128(sb.device_count) * sb.per_device_data) {
    return bad("regions do not fit the data area");
  }
  return OkStatus();
}

void EncodeEntry(const SummaryEntry& e, uint8_t* out) {
  std::memcpy(out, e.key.bytes.data(), 32);
  std::memcpy(out + 32, e.ns.bytes.data(), 32);
  // Bytes 64..95 held the whole parent key in the first builds; its first 8 bytes are still
  // the parent's tag, and the last byte now holds flags (advisory only: an entry of those
  // builds reads a random flag there).
  std::memset(out + 64, 0, 32);
  std::memcpy(out + 64, &e.parent_tag, 8);
  out[95] = e.disk ? kFlagDisk : 0;
  const uint32_t off_4k = uint32_t(e.offset / kBlock);
  std::memcpy(out + 96, &off_4k, 4);
  std::memcpy(out + 100, &e.region, 4);
  std::memcpy(out + 104, &e.seq, 8);
  std::memcpy(out + 112, &e.epoch, 8);
  std::memcpy(out + 120, &e.record_4k, 4);
  // A tombstone (record_4k == 0, which readers of every version skip) keeps its kind where
  // a record keeps its header length.
  const uint32_t tail = e.tombstone() ? uint32_t(e.kind) : e.header_len;
  std::memcpy(out + 124, &tail, 4);
}

SummaryEntry DecodeEntry(const uint8_t* in) {
  SummaryEntry e;
  std::memcpy(e.key.bytes.data(), in, 32);
  std::memcpy(e.ns.bytes.data(), in + 32, 32);
  std::memcpy(&e.parent_tag, in + 64, 8);
  e.disk = (in[95] & kFlagDisk) != 0;
  uint32_t off_4k;
  std::memcpy(&off_4k, in + 96, 4);
  e.offset = uint64_t(off_4k) * kBlock;
  std::memcpy(&e.region, in + 100, 4);
  std::memcpy(&e.seq, in + 104, 8);
  std::memcpy(&e.epoch, in + 112, 8);
  std::memcpy(&e.record_4k, in + 120, 4);
  uint32_t tail;
  std::memcpy(&tail, in + 124, 4);
  if (e.record_4k == 0) {
    // A tombstone; an unknown kind is kept as an invalid tombstone that covers nothing and
    // that recovery drops.
    e.kind = tail == uint32_t(EntryKind::kDeleteKey) || tail == uint32_t(EntryKind::kEvictNamespace)
                 ? EntryKind(tail)
                 : EntryKind(0xff);
  } else {
    e.header_len = tail;
  }
  return e;
}

void EncodeRegionHeader(const RegionHeader& h, const StoreId& id, uint8_t* block) {
  std::memset(block, 0, kBlock);
  RawRegion r{};
  r.magic = kRegionMagic;
  r.version = kFormatVersion;
  r.state = uint16_t(h.state);
  r.region = h.region;
  r.count = h.count;
  r.epoch = h.epoch;
  r.entries_crc = h.entries_crc;
  std::memcpy(r.store_id, id.data(), 16);
  r.crc = 0;
  r.crc = Crc32c(&r, sizeof r);
  std::memcpy(block, &r, sizeof r);
}

RegionHeader DecodeRegionHeader(const uint8_t* block, const StoreId& id) {
  RawRegion r;
  std::memcpy(&r, block, sizeof r);
  RegionHeader h;
  uint32_t crc = r.crc;
  r.crc = 0;
  if (r.magic != kRegionMagic || r.version != kFormatVersion || Crc32c(&r, sizeof r) != crc ||
      std::memcmp(r.store_id, id.data(), 16) != 0) {
    return h;
  }
  if (r.state != uint16_t(RegionState::kOpen) && r.state != uint16_t(RegionState::kSealed)) {
    return h;
  }
  h.state = RegionState(r.state);
  h.region = r.region;
  h.epoch = r.epoch;
  h.count = r.count;
  h.entries_crc = r.entries_crc;
  return h;
}

void EncodeJournalBlock(uint64_t seq, std::span<const SummaryEntry> entries, const StoreId& id,
                        uint8_t* block) {
  std::memset(block, 0, kBlock);
  RawJournal r{};
  r.magic = kJournalMagic;
  r.version = kFormatVersion;
  r.count = uint16_t(entries.size());
  r.seq = seq;
  std::memcpy(r.store_id, id.data(), 16);
  std::memcpy(block, &r, sizeof r);
  for (size_t i = 0; i < entries.size(); ++i) {
    EncodeEntry(entries[i], block + kJournalHeaderBytes + i * kEntryBytes);
  }
  r.crc = Crc32c(block, kBlock);
  std::memcpy(block, &r, sizeof r);
}

std::optional<std::vector<SummaryEntry>> DecodeJournalBlock(const uint8_t* block, uint64_t seq,
                                                            const StoreId& id) {
  RawJournal r;
  std::memcpy(&r, block, sizeof r);
  if (r.magic != kJournalMagic || r.version != kFormatVersion || r.seq != seq ||
      r.count > kEntriesPerJournalBlock || std::memcmp(r.store_id, id.data(), 16) != 0) {
    return std::nullopt;
  }
  uint32_t crc = r.crc;
  RawJournal z = r;
  z.crc = 0;
  uint32_t c = Crc32c(&z, sizeof z);
  c = Crc32c(block + sizeof z, kBlock - sizeof z, c);
  if (c != crc) return std::nullopt;
  std::vector<SummaryEntry> out;
  for (size_t i = 0; i < r.count; ++i) {
    out.push_back(DecodeEntry(block + kJournalHeaderBytes + i * kEntryBytes));
  }
  return out;
}

}  // namespace tw::store
