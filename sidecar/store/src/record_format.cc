#include "record_format.h"

#include <cstring>

#include "tw/common/crc32c.h"
#include "tw/common/strings.h"

namespace tw::store {
namespace {

// Fixed part, little-endian, at the start of the header.
struct FixedHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t flags;
  uint32_t header_len;
  uint32_t segment_count;
  uint8_t key[32];
  uint8_t ns[32];
  uint8_t parent[32];
  uint64_t seq;
  int64_t created_ms;
  uint64_t value_size;
  uint32_t extra_len;
  uint32_t token_count;
  uint32_t header_crc;  // CRC32C of header_len bytes with this field zero
  uint32_t reserved;
};
static_assert(sizeof(FixedHeader) == 152);

struct SegmentEntry {
  uint64_t size;
  uint32_t crc;
  uint32_t reserved;
};
static_assert(sizeof(SegmentEntry) == 16);

uint64_t RawHeaderBytes(size_t segments, size_t extra, size_t tokens) {
  return sizeof(FixedHeader) + segments * sizeof(SegmentEntry) + extra + tokens * 4;
}

uint32_t HeaderCrc(const uint8_t* header, uint64_t len) {
  FixedHeader f;
  std::memcpy(&f, header, sizeof f);
  f.header_crc = 0;
  uint32_t crc = Crc32c(&f, sizeof f);
  return Crc32c(header + sizeof f, len - sizeof f, crc);
}

}  // namespace

RecordLayout ComputeLayout(uint64_t header_len, const std::vector<uint64_t>& segment_sizes) {
  RecordLayout l;
  l.header_len = header_len;
  l.segment_sizes = segment_sizes;
  uint64_t off = header_len;
  for (uint64_t s : segment_sizes) {
    l.segment_offsets.push_back(off);
    off += AlignUp(s, 4096);
    l.value_size += s;
  }
  l.record_len = off;
  return l;
}

RecordLayout ComputeLayout(const ChunkInfo& info) {
  uint64_t h = AlignUp(
      RawHeaderBytes(info.segment_sizes.size(), info.extra.size(), info.tokens.size()), 4096);
  return ComputeLayout(h, info.segment_sizes);
}

void EncodeHeader(const ChunkInfo& info, const RecordLayout& layout, uint64_t seq,
                  int64_t created_unix_ms, std::span<const uint32_t> segment_crcs, uint8_t* out) {
  std::memset(out, 0, layout.header_len);
  FixedHeader f{};
  f.magic = kRecordMagic;
  f.version = kRecordVersion;
  f.header_len = uint32_t(layout.header_len);
  f.segment_count = uint32_t(info.segment_sizes.size());
  std::memcpy(f.key, info.key.bytes.data(), 32);
  std::memcpy(f.ns, info.namespace_digest.bytes.data(), 32);
  std::memcpy(f.parent, info.parent.bytes.data(), 32);
  f.seq = seq;
  f.created_ms = created_unix_ms;
  f.value_size = layout.value_size;
  f.extra_len = uint32_t(info.extra.size());
  f.token_count = uint32_t(info.tokens.size());
  std::memcpy(out, &f, sizeof f);
  uint8_t* p = out + sizeof f;
  for (size_t i = 0; i < info.segment_sizes.size(); ++i) {
    SegmentEntry e{info.segment_sizes[i], i < segment_crcs.size() ? segment_crcs[i] : 0, 0};
    std::memcpy(p, &e, sizeof e);
    p += sizeof e;
  }
  std::memcpy(p, info.extra.data(), info.extra.size());
  p += info.extra.size();
  if (!info.tokens.empty()) std::memcpy(p, info.tokens.data(), info.tokens.size() * 4);
  f.header_crc = HeaderCrc(out, layout.header_len);
  std::memcpy(out, &f, sizeof f);
}

void FinalizeHeader(const RecordLayout& layout, uint8_t* record) {
  FinalizeHeader(layout, record, record);
}

void FinalizeHeader(const RecordLayout& layout, const uint8_t* record, uint8_t* header) {
  uint8_t* p = header + sizeof(FixedHeader);
  for (size_t i = 0; i < layout.segment_sizes.size(); ++i) {
    SegmentEntry e;
    std::memcpy(&e, p + i * sizeof e, sizeof e);
    e.crc = Crc32c(record + layout.segment_offsets[i], layout.segment_sizes[i]);
    std::memcpy(p + i * sizeof e, &e, sizeof e);
  }
  FixedHeader f;
  std::memcpy(&f, header, sizeof f);
  f.header_crc = HeaderCrc(header, layout.header_len);
  std::memcpy(header, &f, sizeof f);
}

void SetHeaderSeq(uint8_t* header, uint64_t seq) {
  FixedHeader f;
  std::memcpy(&f, header, sizeof f);
  f.seq = seq;
  std::memcpy(header, &f, sizeof f);
  f.header_crc = HeaderCrc(header, f.header_len);
  std::memcpy(header, &f, sizeof f);
}

uint64_t PeekHeaderLength(const uint8_t* buf, uint64_t len) {
  if (len < sizeof(FixedHeader)) return 0;
  FixedHeader f;
  std::memcpy(&f, buf, sizeof f);
  if (f.magic != kRecordMagic) return 0;
  return f.header_len;
}

StatusOr<RecordHeader> DecodeHeader(const uint8_t* buf, uint64_t len) {
  if (len < sizeof(FixedHeader)) return DataLossError("record header truncated");
  FixedHeader f;
  std::memcpy(&f, buf, sizeof f);
  if (f.magic != kRecordMagic) return DataLossError("bad record magic");
  if (f.version != kRecordVersion) {
    return FailedPreconditionError(StrCat("unknown record format version ", f.version));
  }
  if (f.header_len > len || f.header_len % 4096 != 0 || f.header_len < 4096 ||
      RawHeaderBytes(f.segment_count, f.extra_len, f.token_count) > f.header_len) {
    return DataLossError("bad record header length");
  }
  if (HeaderCrc(buf, f.header_len) != f.header_crc) {
    return DataLossError("record header checksum mismatch");
  }
  RecordHeader h;
  h.header_len = f.header_len;
  h.seq = f.seq;
  h.created_unix_ms = f.created_ms;
  std::memcpy(h.info.key.bytes.data(), f.key, 32);
  std::memcpy(h.info.namespace_digest.bytes.data(), f.ns, 32);
  std::memcpy(h.info.parent.bytes.data(), f.parent, 32);
  const uint8_t* p = buf + sizeof f;
  uint64_t total = 0, padded = 0;
  for (uint32_t i = 0; i < f.segment_count; ++i) {
    SegmentEntry e;
    std::memcpy(&e, p, sizeof e);
    p += sizeof e;
    // A checksum only proves the bytes are the ones written: sizes that would wrap the layout
    // (found by the store_record fuzz target) are refused like any other corruption.
    if (e.size > kMaxRecordValueBytes || (padded += AlignUp(e.size, 4096)) > kMaxRecordValueBytes) {
      return DataLossError("record segment sizes out of range");
    }
    h.info.segment_sizes.push_back(e.size);
    h.segment_crcs.push_back(e.crc);
    total += e.size;
  }
  if (total != f.value_size) return DataLossError("record segment sizes do not add up");
  h.info.extra.assign(reinterpret_cast<const char*>(p), f.extra_len);
  p += f.extra_len;
  h.info.tokens.resize(f.token_count);
  if (f.token_count) std::memcpy(h.info.tokens.data(), p, size_t(f.token_count) * 4);
  return h;
}

}  // namespace tw::store
