// Fuzz body of a chunk record's on-disk header (a corrupted disk is outside input). The input
// is zero-padded to a whole number of 4 KiB blocks, as a header is on media. The first byte's
// low bit asks the body to recompute the header checksum first, so the fuzzer also reaches
// what lies behind the CRC: a header with a valid checksum but hostile sizes. A header that
// decodes names a layout inside the record: segments in order, 4 KiB aligned, no overflow.
#include <algorithm>
#include <cstring>
#include <vector>

#include "fuzz_targets.h"
#include "record_format.h"
#include "tw/common/crc32c.h"

namespace tw::fuzz {
namespace {

constexpr size_t kFixedBytes = 152;  // record_format.cc FixedHeader
constexpr size_t kCrcOffset = 144;   // FixedHeader::header_crc
constexpr size_t kLenOffset = 8;     // FixedHeader::header_len
constexpr size_t kMaxInput = 64 << 10;

void FixCrc(std::vector<uint8_t>& buf) {
  uint32_t header_len;
  std::memcpy(&header_len, buf.data() + kLenOffset, 4);
  if (header_len < kFixedBytes || header_len > buf.size()) return;
  std::memset(buf.data() + kCrcOffset, 0, 4);
  uint32_t crc = Crc32c(buf.data(), header_len);
  std::memcpy(buf.data() + kCrcOffset, &crc, 4);
}

}  // namespace

int FuzzStoreRecord(const uint8_t* data, size_t size) {
  if (size == 0 || size > kMaxInput) return 0;
  const bool fix_crc = data[0] & 1;
  std::vector<uint8_t> buf(store::AlignUp(size - 1 + 1, 4096), 0);
  std::memcpy(buf.data(), data + 1, size - 1);
  if (fix_crc) FixCrc(buf);
  (void)store::PeekHeaderLength(buf.data(), buf.size());
  auto h = store::DecodeHeader(buf.data(), buf.size());
  if (!h.ok()) return 0;
  if (h->segment_crcs.size() != h->info.segment_sizes.size()) __builtin_trap();
  store::RecordLayout l = store::ComputeLayout(h->header_len, h->info.segment_sizes);
  uint64_t end = l.header_len;
  for (size_t i = 0; i < l.segment_offsets.size(); ++i) {
    // Each segment starts 4 KiB aligned after the previous one and ends inside the record.
    if (l.segment_offsets[i] % 4096 != 0 || l.segment_offsets[i] < end) __builtin_trap();
    end = l.segment_offsets[i] + l.segment_sizes[i];
    if (end < l.segment_offsets[i] || end > l.record_len) __builtin_trap();
  }
  if (l.record_len < l.header_len || l.record_len % 4096 != 0) __builtin_trap();
  return 1;
}

}  // namespace tw::fuzz
