// The on-disk (and in-DRAM) layout of one chunk record, and its checksums.
//
//   [header: fixed part | segment table | extra bytes | token ids | zero pad to 4 KiB]
//   [segment 0 | pad to 4 KiB][segment 1 | pad to 4 KiB] ...
//
// Every segment begins on a 4 KiB boundary, so a GPU-direct or O_DIRECT read of one segment
// lands without a bounce buffer. The header carries magic, format version, key, namespace,
// parent, sizes, sequence number, creation time, one CRC32C per segment, and a CRC32C of the
// header itself. The DRAM tier keeps a chunk in exactly this layout, so writing it back to
// NVMe is one O_DIRECT write straight from the arena.
//
// Pure functions; no threading rules.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tw/common/status.h"
#include "tw/store/store.h"

namespace tw::store {

inline constexpr uint32_t kRecordMagic = 0x43525754;  // "TWRC"
inline constexpr uint16_t kRecordVersion = 1;
// Largest value (sum of its segments, each padded to 4 KiB) a record header may describe: far
// above any limits.max_value_size in use, and small enough that no layout sum can wrap.
inline constexpr uint64_t kMaxRecordValueBytes = uint64_t{1} << 40;

inline uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Offsets of one record's parts, from its chunk description.
struct RecordLayout {
  uint64_t header_len = 0;                // bytes, multiple of 4 KiB
  std::vector<uint64_t> segment_offsets;  // from the start of the record, 4 KiB aligned
  std::vector<uint64_t> segment_sizes;    // bytes
  uint64_t value_size = 0;                // sum of segment sizes
  uint64_t record_len = 0;                // header + padded segments, multiple of 4 KiB
};

RecordLayout ComputeLayout(const ChunkInfo& info);
// Layout from a decoded header's sizes (header_len given).
RecordLayout ComputeLayout(uint64_t header_len, const std::vector<uint64_t>& segment_sizes);

// A decoded, checksum-verified header.
struct RecordHeader {
  ChunkInfo info;
  uint64_t seq = 0;
  int64_t created_unix_ms = 0;
  std::vector<uint32_t> segment_crcs;
  uint64_t header_len = 0;
};

// Writes the header into `out` (layout.header_len bytes, which this zero-fills first).
// `segment_crcs` may be empty: FinalizeHeader() fills them in later.
void EncodeHeader(const ChunkInfo& info, const RecordLayout& layout, uint64_t seq,
                  int64_t created_unix_ms, std::span<const uint32_t> segment_crcs, uint8_t* out);
// Computes each segment's CRC32C from the record bytes at `record` (header + data in layout)
// and stores them and the header CRC in the header.
void FinalizeHeader(const RecordLayout& layout, uint8_t* record);
// The same, into `header` (a copy of the record's header), leaving the record untouched: the
// write-back of a chunk that readers may be reading from the DRAM arena.
void FinalizeHeader(const RecordLayout& layout, const uint8_t* record, uint8_t* header);
// Rewrites the sequence number (and header CRC) of an encoded header.
void SetHeaderSeq(uint8_t* header, uint64_t seq);
// Parses and verifies a header of `len` bytes (at least the header_len it names). DataLoss on
// a checksum or magic mismatch, or on sizes no record can have (segments whose padded sum
// exceeds kMaxRecordValueBytes), FailedPrecondition on an unknown format version. The layout
// of a decoded header (ComputeLayout) never wraps.
StatusOr<RecordHeader> DecodeHeader(const uint8_t* buf, uint64_t len);
// The header length a record names in its first bytes (0 when not a record).
uint64_t PeekHeaderLength(const uint8_t* buf, uint64_t len);

}  // namespace tw::store
