// On-disk metadata of the NVMe tier: the superblock, the per-region header (the region's
// state and, once sealed, its dense summary), and the commit journal. Recovery reads only
// these, never the data.
//
//   every path:  [superblock copy A @0][superblock copy B @4 KiB] ... [data area @data_offset]
//   path 0 also: [region headers @header_off: one 4 KiB block per region]
//                [dense summaries @dense_off: max_entries x 128 B per region]
//                [journal @journal_off: journal_blocks x 4 KiB]
//
// The two superblock copies alternate by generation, so a torn superblock write always leaves
// the previous one valid. Every structure carries a CRC32C and the store's identity.
//
// Pure functions; no threading rules.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "tw/common/keys.h"
#include "tw/common/status.h"

namespace tw::store {

inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint64_t kBlock = 4096;
inline constexpr uint64_t kReservedHead = 1 << 20;  // superblocks; first MiB of every path

using StoreId = std::array<uint8_t, 16>;

struct Superblock {
  uint32_t version = kFormatVersion;
  StoreId store_id{};
  uint32_t device_index = 0;
  uint32_t device_count = 1;
  uint64_t region_size = 0;
  uint64_t stripe_unit = 0;
  uint64_t data_offset = 0;      // on every path
  uint64_t per_device_data = 0;  // bytes of the data area on every path
  uint32_t region_count = 0;
  uint32_t max_entries = 0;  // entries per region (dense summary capacity)
  uint32_t journal_blocks = 0;
  uint64_t header_off = 0;  // on path 0
  uint64_t dense_off = 0;
  uint64_t journal_off = 0;
  uint64_t generation = 0;    // checkpoint number; copy = generation % 2
  uint64_t journal_base = 0;  // sequence number of journal block 0 since this checkpoint
  uint64_t seq_floor = 0;     // every sequence number issued later is larger
};

enum class SuperblockCheck {
  kValid = 0,    // ours, this format version
  kZero = 1,     // all zeros: never formatted
  kForeign = 2,  // something else (a file system, another program's data)
  kVersion = 3,  // ours, but a format version this build does not know
};

void EncodeSuperblock(const Superblock& sb, uint8_t* block);
SuperblockCheck DecodeSuperblock(const uint8_t* block, Superblock* out);
// Checks that a decoded superblock describes a geometry this build can use on a path of
// `device_size` bytes: block-aligned areas in order (superblocks, region headers, dense
// summaries, journal, data) inside the path, non-zero region size, stripe unit, counts, and a
// data area that holds its regions. A valid checksum over hostile fields (a bug of another
// program, deliberate tampering) is DataLoss here, never a division by zero or a read outside
// the device later.
Status ValidateSuperblock(const Superblock& sb, uint64_t device_size);

// What a summary entry stands for. A tombstone has no bytes on media (record_4k == 0; its kind
// is stored where a record keeps its header length): records it covers, those with a smaller
// sequence number, are not indexed by recovery.
enum class EntryKind : uint8_t {
  kRecord = 0,
  kDeleteKey = 1,       // `key` was deleted at `seq`
  kEvictNamespace = 2,  // every chunk of namespace `ns` older than `seq` was evicted
};

// One committed record (or tombstone): what recovery needs to index it without reading it.
// Encoded in 128 bytes: key, namespace, flags (1 byte, then 31 zero bytes; stores written
// before flags existed keep the chunk's parent key there, which no reader uses), offset in
// 4 KiB units, region, sequence number, epoch, record length in 4 KiB units, header length.
struct SummaryEntry {
  Key key;
  Key ns;
  uint64_t offset = 0;      // logical byte offset of the record (stored in 4 KiB units)
  uint32_t region = 0;      // first region of the run the record was written into
  uint64_t seq = 0;         // record sequence number
  uint64_t epoch = 0;       // epoch of the region when the record was written
  uint32_t record_4k = 0;   // record length in 4 KiB units; 0 for a tombstone
  uint32_t header_len = 0;  // bytes
  // The first 8 bytes of the parent key (of the namespace digest for a first chunk): enough
  // for recovery to rebuild the index's prefix links.
  uint64_t parent_tag = 0;
  bool disk = false;  // put with durability `disk` (flag bit 0; advisory: reclaim order)
  EntryKind kind = EntryKind::kRecord;

  bool tombstone() const { return kind != EntryKind::kRecord; }
  // True when this tombstone hides record `r`.
  bool Covers(const SummaryEntry& r) const {
    if (r.seq >= seq) return false;
    return (kind == EntryKind::kDeleteKey && r.key == key) ||
           (kind == EntryKind::kEvictNamespace && r.ns == ns);
  }
};
inline constexpr size_t kEntryBytes = 128;
void EncodeEntry(const SummaryEntry& e, uint8_t* out);
SummaryEntry DecodeEntry(const uint8_t* in);

// Region header states.
enum class RegionState : uint16_t {
  kInvalid = 0,  // unreadable or never written
  kOpen = 1,     // cleared for writing at `epoch`; its records are in the journal
  kSealed = 2,   // `count` dense entries follow in the dense summary area
};

struct RegionHeader {
  RegionState state = RegionState::kInvalid;
  uint32_t region = 0;
  uint64_t epoch = 0;
  uint32_t count = 0;
  uint32_t entries_crc = 0;
};
void EncodeRegionHeader(const RegionHeader& h, const StoreId& id, uint8_t* block);
// kInvalid state when the block is not a valid header of this store.
RegionHeader DecodeRegionHeader(const uint8_t* block, const StoreId& id);

// Journal blocks: up to kEntriesPerJournalBlock entries each.
inline constexpr size_t kJournalHeaderBytes = 64;
inline constexpr size_t kEntriesPerJournalBlock = (kBlock - kJournalHeaderBytes) / kEntryBytes;
void EncodeJournalBlock(uint64_t seq, std::span<const SummaryEntry> entries, const StoreId& id,
                        uint8_t* block);
// The entries of a valid block whose sequence number is `seq`; nullopt otherwise.
std::optional<std::vector<SummaryEntry>> DecodeJournalBlock(const uint8_t* block, uint64_t seq,
                                                            const StoreId& id);

}  // namespace tw::store
