// Fuzz body of the NVMe tier's metadata decoders (a corrupted disk is outside input). The
// first input byte picks the structure and whether the body recomputes its checksum first (so
// the fuzzer reaches what lies behind the CRC); the rest, zero-padded, is one 4 KiB block:
//   0: a superblock, checked against a device size named by the first 8 bytes after it;
//   1: a region header; 2: a journal block; 3: a summary entry.
// A superblock that passes ValidateSuperblock() describes a geometry inside its device; a
// decoded summary entry re-encodes to an entry that decodes the same.
#include <cstring>
#include <vector>

#include "fuzz_targets.h"
#include "metadata_format.h"
#include "tw/common/crc32c.h"

namespace tw::fuzz {
namespace {

using store::kBlock;

// Offsets of the checksums in metadata_format.cc's raw structures.
constexpr size_t kSuperCrcOffset = 128;
constexpr size_t kSuperBytes = 136;
constexpr size_t kRegionCrcOffset = 28;
constexpr size_t kRegionBytes = 48;
constexpr size_t kRegionIdOffset = 32;
constexpr size_t kJournalCrcOffset = 32;
constexpr size_t kJournalIdOffset = 16;
constexpr size_t kJournalSeqOffset = 8;

void PutCrc(uint8_t* block, size_t covered, size_t at) {
  std::memset(block + at, 0, 4);
  uint32_t crc = Crc32c(block, covered);
  std::memcpy(block + at, &crc, 4);
}

// The geometry a valid superblock promises, computed independently in 128-bit arithmetic.
void CheckGeometry(const store::Superblock& sb, uint64_t device_size) {
  using u128 = unsigned __int128;
  const u128 dense = (u128(sb.max_entries) * store::kEntryBytes + kBlock - 1) / kBlock * kBlock;
  bool ok = sb.device_count >= 1 && sb.device_index < sb.device_count && sb.region_count >= 1 &&
            sb.region_size >= 4 * kBlock && sb.region_size % kBlock == 0 &&
            sb.stripe_unit >= kBlock && sb.stripe_unit % kBlock == 0 && sb.max_entries >= 1 &&
            sb.journal_blocks >= 1 && sb.header_off >= store::kReservedHead &&
            sb.header_off % kBlock == 0 && sb.dense_off % kBlock == 0 &&
            sb.journal_off % kBlock == 0 && sb.data_offset % kBlock == 0 &&
            u128(sb.header_off) + u128(sb.region_count) * kBlock <= sb.dense_off &&
            u128(sb.dense_off) + u128(sb.region_count) * dense <= sb.journal_off &&
            u128(sb.journal_off) + u128(sb.journal_blocks) * kBlock <= sb.data_offset &&
            u128(sb.data_offset) + sb.per_device_data <= device_size &&
            sb.per_device_data % sb.stripe_unit == 0 &&
            u128(sb.region_count) * sb.region_size <= u128(sb.device_count) * sb.per_device_data;
  if (!ok) __builtin_trap();
}

}  // namespace

int FuzzStoreMetadata(const uint8_t* data, size_t size) {
  if (size == 0 || size > 1 + kBlock + 8) return 0;
  const int kind = data[0] & 3;
  const bool fix_crc = data[0] & 4;
  std::vector<uint8_t> block(kBlock, 0);
  std::memcpy(block.data(), data + 1, std::min<size_t>(size - 1, kBlock));
  switch (kind) {
    case 0: {
      uint64_t device_size = 0;
      if (size > 1 + kSuperBytes) {
        std::memcpy(&device_size, data + 1 + kSuperBytes,
                    std::min<size_t>(8, size - 1 - kSuperBytes));
        std::memset(block.data() + kSuperBytes, 0, kBlock - kSuperBytes);
      }
      if (fix_crc) PutCrc(block.data(), kSuperBytes, kSuperCrcOffset);
      store::Superblock sb;
      if (store::DecodeSuperblock(block.data(), &sb) != store::SuperblockCheck::kValid) return 0;
      if (!store::ValidateSuperblock(sb, device_size).ok()) return 0;
      CheckGeometry(sb, device_size);
      return 1;
    }
    case 1: {
      store::StoreId id;
      std::memcpy(id.data(), block.data() + kRegionIdOffset, id.size());
      if (fix_crc) PutCrc(block.data(), kRegionBytes, kRegionCrcOffset);
      store::RegionHeader h = store::DecodeRegionHeader(block.data(), id);
      if (h.state == store::RegionState::kInvalid) return 0;
      if (h.state != store::RegionState::kOpen && h.state != store::RegionState::kSealed) {
        __builtin_trap();
      }
      return 1;
    }
    case 2: {
      store::StoreId id;
      std::memcpy(id.data(), block.data() + kJournalIdOffset, id.size());
      uint64_t seq;
      std::memcpy(&seq, block.data() + kJournalSeqOffset, 8);
      if (fix_crc) PutCrc(block.data(), kBlock, kJournalCrcOffset);
      auto entries = store::DecodeJournalBlock(block.data(), seq, id);
      if (!entries) return 0;
      if (entries->size() > store::kEntriesPerJournalBlock) __builtin_trap();
      return 1;
    }
    default: {
      store::SummaryEntry e = store::DecodeEntry(block.data());
      std::vector<uint8_t> again(store::kEntryBytes);
      store::EncodeEntry(e, again.data());
      store::SummaryEntry f = store::DecodeEntry(again.data());
      if (!(f.key == e.key && f.ns == e.ns && f.offset == e.offset && f.region == e.region &&
            f.seq == e.seq && f.epoch == e.epoch && f.record_4k == e.record_4k &&
            f.header_len == e.header_len && f.parent_tag == e.parent_tag && f.disk == e.disk &&
            f.kind == e.kind)) {
        __builtin_trap();
      }
      return 1;
    }
  }
}

}  // namespace tw::fuzz
