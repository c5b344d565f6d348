#include "record_format.h"

#include <gtest/gtest.h>

#include "aligned_buffer.h"
#include "metadata_format.h"
#include "store_test_util.h"
#include "tw/common/crc32c.h"

namespace tw::store {
namespace {

TEST(RecordFormatTest, SegmentsStartOn4KiBAndRoundTrip) {
  auto c = testing::MakeChunk(3, {1, 5000, 8192, 0});
  RecordLayout l = ComputeLayout(c.info);
  EXPECT_EQ(l.header_len, 4096u);
  EXPECT_EQ(l.segment_offsets, (std::vector<uint64_t>{4096, 8192, 16384, 24576}));
  EXPECT_EQ(l.record_len, 24576u);
  EXPECT_EQ(l.value_size, 1u + 5000 + 8192);
  AlignedBuffer rec(l.record_len);
  EncodeHeader(c.info, l, 77, 123456, {}, rec.data());
  for (size_t s = 0; s < c.segments.size(); ++s) {
    if (!c.segments[s].empty()) {
      memcpy(rec.data() + l.segment_offsets[s], c.segments[s].data(), c.segments[s].size());
    }
  }
  FinalizeHeader(l, rec.data());
  SetHeaderSeq(rec.data(), 99);
  auto h = DecodeHeader(rec.data(), l.header_len);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->seq, 99u);
  EXPECT_EQ(h->created_unix_ms, 123456);
  EXPECT_EQ(h->info.key, c.info.key);
  EXPECT_EQ(h->info.tokens, c.info.tokens);
  EXPECT_EQ(h->info.extra, c.info.extra);
  EXPECT_EQ(h->info.segment_sizes, c.info.segment_sizes);
  EXPECT_EQ(h->segment_crcs[1], Crc32c(c.segments[1].data(), 5000));
}

TEST(RecordFormatTest, EveryHeaderBitIsChecked) {
  auto c = testing::MakeChunk(4, {100});
  RecordLayout l = ComputeLayout(c.info);
  AlignedBuffer rec(l.record_len);
  EncodeHeader(c.info, l, 1, 1, {}, rec.data());
  for (uint64_t byte : {0ul, 5ul, 40ul, 150ul, 200ul, 4000ul}) {
    rec.data()[byte] ^= 0x10;
    EXPECT_FALSE(DecodeHeader(rec.data(), l.header_len).ok()) << byte;
    rec.data()[byte] ^= 0x10;
  }
  EXPECT_TRUE(DecodeHeader(rec.data(), l.header_len).ok());
  EXPECT_FALSE(DecodeHeader(rec.data(), 100).ok());
}

TEST(RecordFormatTest, LargeHeadersGrowIn4KiBSteps) {
  auto c = testing::MakeChunk(5, std::vector<uint64_t>(300, 10));
  c.info.tokens.assign(2000, 1);
  RecordLayout l = ComputeLayout(c.info);
  EXPECT_EQ(l.header_len, 16384u);
  AlignedBuffer rec(l.record_len);
  EncodeHeader(c.info, l, 1, 1, {}, rec.data());
  auto h = DecodeHeader(rec.data(), l.header_len);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->info.tokens.size(), 2000u);
}

// A header with a valid checksum whose segment sizes wrap the layout's sums (two segments of
// 2^63 bytes "add up" to a value size of 0) is corrupt, not a record to read segments of
// (found by the store_record fuzz target; tests/fuzz/corpus/store_record/regress_*).
TEST(RecordFormatTest, SegmentSizesThatWrapTheLayoutAreRefused) {
  auto c = testing::MakeChunk(6, {4096});
  c.info.segment_sizes = {uint64_t{1} << 63, uint64_t{1} << 63};
  RecordLayout l = ComputeLayout(c.info);
  EXPECT_EQ(l.value_size, 0u);  // the wrap the decoder must not accept
  AlignedBuffer rec(l.header_len);
  EncodeHeader(c.info, l, 1, 1, {}, rec.data());
  auto h = DecodeHeader(rec.data(), l.header_len);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), StatusCode::kDataLoss) << h.status().ToString();
  // One segment just over the limit is refused too; one at it is a record.
  c.info.segment_sizes = {kMaxRecordValueBytes + 1};
  l = ComputeLayout(c.info);
  EncodeHeader(c.info, l, 1, 1, {}, rec.data());
  EXPECT_EQ(DecodeHeader(rec.data(), l.header_len).status().code(), StatusCode::kDataLoss);
  c.info.segment_sizes = {kMaxRecordValueBytes};
  l = ComputeLayout(c.info);
  EncodeHeader(c.info, l, 1, 1, {}, rec.data());
  EXPECT_TRUE(DecodeHeader(rec.data(), l.header_len).ok());
}

TEST(MetadataFormatTest, SuperblockJournalAndRegionHeaders) {
  AlignedBuffer b(4096);
  Superblock sb;
  sb.region_size = 1 << 20;
  sb.store_id[3] = 9;
  sb.generation = 5;
  EncodeSuperblock(sb, b.data());
  Superblock out;
  EXPECT_EQ(DecodeSuperblock(b.data(), &out), SuperblockCheck::kValid);
  EXPECT_EQ(out.generation, 5u);
  EXPECT_EQ(out.store_id, sb.store_id);
  b.data()[100] ^= 1;
  EXPECT_EQ(DecodeSuperblock(b.data(), &out), SuperblockCheck::kForeign);
  memset(b.data(), 0, 4096);
  EXPECT_EQ(DecodeSuperblock(b.data(), &out), SuperblockCheck::kZero);

  std::vector<SummaryEntry> es(kEntriesPerJournalBlock);
  for (size_t i = 0; i < es.size(); ++i) {
    es[i].offset = i * 4096;
    es[i].seq = 100 + i;
    es[i].key.bytes[0] = uint8_t(i);
  }
  EncodeJournalBlock(42, es, sb.store_id, b.data());
  auto got = DecodeJournalBlock(b.data(), 42, sb.store_id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->size(), es.size());
  EXPECT_EQ((*got)[7].seq, 107u);
  EXPECT_FALSE(DecodeJournalBlock(b.data(), 43, sb.store_id));  // stale position
  StoreId other{};
  EXPECT_FALSE(DecodeJournalBlock(b.data(), 42, other));  // another store's block
  b.data()[3000] ^= 4;
  EXPECT_FALSE(DecodeJournalBlock(b.data(), 42, sb.store_id));  // torn

  RegionHeader h;
  h.state = RegionState::kSealed;
  h.region = 12;
  h.epoch = 1000;
  h.count = 3;
  EncodeRegionHeader(h, sb.store_id, b.data());
  RegionHeader d = DecodeRegionHeader(b.data(), sb.store_id);
  EXPECT_EQ(d.state, RegionState::kSealed);
  EXPECT_EQ(d.epoch, 1000u);
  EXPECT_EQ(DecodeRegionHeader(b.data(), other).state, RegionState::kInvalid);
}

TEST(MetadataFormatTest, SummaryEntriesCarryDurabilityAndTombstones) {
  uint8_t buf[kEntryBytes];
  SummaryEntry r;
  r.key.bytes[0] = 1;
  r.offset = 8 * 4096;
  r.seq = 77;
  r.record_4k = 3;
  r.header_len = 4096;
  r.disk = true;
  r.parent_tag = 0x0123456789abcdefull;
  EncodeEntry(r, buf);
  SummaryEntry d = DecodeEntry(buf);
  EXPECT_EQ(d.kind, EntryKind::kRecord);
  EXPECT_TRUE(d.disk);
  EXPECT_EQ(d.parent_tag, 0x0123456789abcdefull);
  EXPECT_EQ(d.header_len, 4096u);
  r.disk = false;
  EncodeEntry(r, buf);
  EXPECT_FALSE(DecodeEntry(buf).disk);

  SummaryEntry t;
  t.kind = EntryKind::kDeleteKey;
  t.key = r.key;
  t.seq = 100;
  EncodeEntry(t, buf);
  d = DecodeEntry(buf);
  ASSERT_EQ(d.kind, EntryKind::kDeleteKey);
  EXPECT_TRUE(d.Covers(r));  // older record of the key
  r.seq = 101;
  EXPECT_FALSE(d.Covers(r));  // put after the delete
  SummaryEntry n;
  n.kind = EntryKind::kEvictNamespace;
  n.ns.bytes[5] = 9;
  n.seq = 200;
  EncodeEntry(n, buf);
  d = DecodeEntry(buf);
  ASSERT_EQ(d.kind, EntryKind::kEvictNamespace);
  r.ns = n.ns;
  EXPECT_TRUE(d.Covers(r));
  r.ns.bytes[5] = 8;
  EXPECT_FALSE(d.Covers(r));
  // A zero-length entry of unknown kind covers nothing.
  std::memset(buf + 124, 0x7f, 4);
  d = DecodeEntry(buf);
  EXPECT_TRUE(d.tombstone());
  r.ns = n.ns;
  EXPECT_FALSE(d.Covers(r));
}

}  // namespace
}  // namespace tw::store
