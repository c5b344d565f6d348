// The storage engine's compact index and what builds on it: index memory per chunk, tag
// collisions, the index-only get (GetOptions, Peek), prefix-aware eviction and reclaim, the
// namespace quota order, and promotion from NVMe to DRAM.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "store_test_util.h"
#include "tw/store/device.h"
#include "tw/store/store.h"

namespace tw::store {
namespace {

using namespace testing;  // store_test_util.h

// Forwards everything but Get(GetOptions) and Peek, so the default implementations answer.
class Forwarding : public Store {
 public:
  explicit Forwarding(Store& s) : s_(s) {}
  PutResult Put(const PutRequest& r) override { return s_.Put(r); }
  GetResult Get(const Key& k, std::span<const ScatterEntry> r, Deadline d, LeaseId l) override {
    return s_.Get(k, r, d, l);
  }
  using Store::Get;
  LookupResult Lookup(std::span<const Key> c, bool t) override { return s_.Lookup(c, t); }
  void ReleaseLease(LeaseId l) override { s_.ReleaseLease(l); }
  std::optional<ChunkMeta> Stat(const Key& k) override { return s_.Stat(k); }
  bool Delete(const Key& k) override { return s_.Delete(k); }
  uint64_t EvictNamespace(const Key& n) override { return s_.EvictNamespace(n); }
  std::vector<NamespaceUsage> Namespaces() override { return s_.Namespaces(); }
  void Export(const std::function<bool(const ChunkMeta&)>& fn) override { s_.Export(fn); }
  StoreStats Stats() override { return s_.Stats(); }
  Status Reconfigure(const Options& o) override { return s_.Reconfigure(o); }
  Status Close(std::chrono::nanoseconds g) override { return s_.Close(g); }

 private:
  Store& s_;
};

// The same chunk under another key that shares its first 8 bytes (its index tag).
TestChunk SameTag(const TestChunk& c) {
  TestChunk d = MakeChunk(777, {c.segments[0].size()});
  d.info.key = c.info.key;
  d.info.key.bytes[31] ^= 0x5A;
  return d;
}

// A chain of `n` chunks under `parent`; ids from `id`.
std::vector<TestChunk> Chain(uint64_t id, size_t n, Key parent, uint64_t size, uint32_t ns = 0) {
  std::vector<TestChunk> out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(MakeChunk(id + i, {size}, parent, ns));
    parent = out.back().info.key;
  }
  return out;
}

// Stored chunks among `all` whose parent chunk is not stored (unreachable by prefix lookup).
int Orphans(Store& s, const std::vector<TestChunk>& all) {
  int n = 0;
  for (const TestChunk& c : all) {
    if (!s.Peek(c.info.key)) continue;
    if (c.info.parent != c.info.namespace_digest && !s.Peek(c.info.parent)) ++n;
  }
  return n;
}

TEST(StoreIndexTest, IndexBytesPerChunkAfterReopen) {
  auto mem = std::make_shared<MemDeviceFactory>();
  // 32 KiB records: a region holds at most one per 32 KiB.
  Options o = TestOptions(mem, 0, 192 * MiB, 4 * MiB);
  const int n = 5000;
  {
    auto s = MustOpen(o);
    std::vector<uint8_t> value(28 * KiB, 0x33);
    for (int i = 0; i < n; ++i) {
      TestChunk c = MakeChunk(i, {});
      c.info.segment_sizes = {value.size()};
      c.segments = {value};
      ASSERT_EQ(s->Put(c.Request(Durability::kMemory)), PutResult::kStored) << i;
    }
    ASSERT_TRUE(s->Close(std::chrono::seconds(10)).ok());
  }
  auto s = MustOpen(o);
  StoreStats st = s->Stats();
  ASSERT_EQ(st.nvme.chunks, uint64_t(n));
  const double per_chunk = double(st.index_bytes) / double(n);
  EXPECT_LE(per_chunk, 64.0) << st.index_bytes;
  // Honest: at least the 32-byte slots of a table that holds them all.
  EXPECT_GE(per_chunk, 32.0) << st.index_bytes;
}

TEST(StoreIndexTest, TagCollisionNeverServesTheOtherChunk) {
  auto mem = std::make_shared<MemDeviceFactory>();
  Options o = TestOptions(mem, 4 * MiB, 64 * MiB);
  TestChunk a = MakeChunk(1, {20 * KiB});
  TestChunk b = SameTag(a);
  ASSERT_NE(a.info.key, b.info.key);
  {
    auto s = MustOpen(o);
    ASSERT_EQ(s->Put(a.Request(Durability::kDisk)), PutResult::kStored);
    // The second key is not stored: its put answers `exists`, its reads miss.
    EXPECT_EQ(s->Put(b.Request(Durability::kDisk)), PutResult::kExists);
    bool eq = true;
    EXPECT_EQ(ReadAll(*s, b, &eq).miss, MissReason::kAbsent);  // from DRAM
    EXPECT_FALSE(s->Stat(b.info.key));
    EXPECT_FALSE(s->Delete(b.info.key));
    EXPECT_FALSE(s->Peek(b.info.key));
    const Key both[1] = {b.info.key};
    EXPECT_EQ(s->Lookup(both, false).prefix, 0u);  // in DRAM: the full key is at hand
    ReadAll(*s, a, &eq);
    EXPECT_TRUE(eq);
    ASSERT_TRUE(s->Close(std::chrono::seconds(5)).ok());
  }
  auto s = MustOpen(o);  // now only on NVMe: the record header decides
  bool eq = true;
  GetResult r = ReadAll(*s, b, &eq);
  EXPECT_EQ(r.miss, MissReason::kAbsent);
  EXPECT_FALSE(eq);
  EXPECT_FALSE(s->Stat(b.info.key));
  EXPECT_FALSE(s->Delete(b.info.key));
  r = ReadAll(*s, a, &eq);  // not dropped as corrupt
  EXPECT_TRUE(eq);
  EXPECT_EQ(r.tier, Tier::kNvme);
  EXPECT_EQ(s->Stats().nvme.corrupt, 0u);
  EXPECT_TRUE(s->Delete(a.info.key));
}

// A lookup compares only the 24 key bytes past the tag (the tag is the first 8): a key that
// differs from a stored one in any one of them is a miss, alone or deep in a chain.
TEST(StoreIndexTest, LookupMissesAKeyDifferingInAnyByteAfterTheTag) {
  auto mem = std::make_shared<MemDeviceFactory>();
  auto s = MustOpen(TestOptions(mem, 4 * MiB, 64 * MiB));
  TestChunk a = MakeChunk(1, {4 * KiB});
  TestChunk b = MakeChunk(2, {4 * KiB});
  ASSERT_EQ(s->Put(a.Request(Durability::kMemory)), PutResult::kStored);
  ASSERT_EQ(s->Put(b.Request(Durability::kMemory)), PutResult::kStored);
  const Key stored[2] = {a.info.key, b.info.key};
  LookupResult both = s->Lookup(stored, false);
  ASSERT_EQ(both.prefix, 2u);
  ASSERT_EQ(both.tiers[1], Tier::kDram);
  for (size_t byte = 8; byte < 32; ++byte) {
    Key other = b.info.key;
    other.bytes[byte] ^= 0x01;
    const Key chain[2] = {a.info.key, other};
    EXPECT_EQ(s->Lookup(chain, false).prefix, 1u) << "byte " << byte;
    const Key alone[1] = {other};
    LookupResult r = s->Lookup(alone, false);
    EXPECT_EQ(r.prefix, 0u) << "byte " << byte;
    EXPECT_EQ(r.miss, MissReason::kAbsent) << "byte " << byte;
  }
  EXPECT_EQ(s->Lookup(stored, false).prefix, 2u);
}

TEST(StoreIndexTest, GetOptionsNamespaceWholeChunkAndSegmentSizes) {
  auto mem = std::make_shared<MemDeviceFactory>();
  Options o = TestOptions(mem, 8 * MiB, 64 * MiB);
  TestChunk c = MakeChunk(3, {10000, 8192, 1, 0, 4096});
  const std::vector<uint64_t> sizes = c.info.segment_sizes;
  std::vector<uint8_t> flat;
  for (auto& seg : c.segments) flat.insert(flat.end(), seg.begin(), seg.end());
  auto check = [&](Store& s, Tier tier) {
    GetOptions g;
    g.whole_chunk = true;
    std::vector<uint8_t> dest(flat.size() + 100, 0xEE);
    g.dest = dest.data();
    g.capacity = dest.size();
    g.namespace_digest = c.info.namespace_digest;
    GetResult r = s.Get(c.info.key, {}, g);
    ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
    EXPECT_EQ(r.tier, tier);
    EXPECT_EQ(r.bytes, flat.size());
    EXPECT_EQ(r.segment_sizes, sizes);
    EXPECT_EQ(0, memcmp(dest.data(), flat.data(), flat.size()));
    EXPECT_EQ(dest[flat.size()], 0xEE);
    // Another namespace: absent (tenant isolation), whatever the mode.
    g.namespace_digest = testing::TestNamespace(9);
    r = s.Get(c.info.key, {}, g);
    EXPECT_EQ(r.miss, MissReason::kAbsent);
    EXPECT_TRUE(r.segment_sizes.empty());
    // A destination one byte short: a clear error that says how much is needed.
    g.namespace_digest.reset();
    g.capacity = flat.size() - 1;
    r = s.Get(c.info.key, {}, g);
    EXPECT_NE(r.miss, MissReason::kNone);
    EXPECT_EQ(r.error.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.error.message().find(std::to_string(flat.size())), std::string_view::npos)
        << r.error.ToString();
    EXPECT_EQ(r.segment_sizes, sizes);
    // Ranges: a sub-range, and one outside the value.
    std::vector<uint8_t> part(100);
    ScatterEntry in{0, 5000, 100, part.data()};
    GetOptions plain;
    r = s.Get(c.info.key, {&in, 1}, plain);
    EXPECT_EQ(r.miss, MissReason::kNone);
    EXPECT_EQ(r.segment_sizes, sizes);
    EXPECT_EQ(0, memcmp(part.data(), c.segments[0].data() + 5000, 100));
    ScatterEntry out{1, 8100, 100, part.data()};
    r = s.Get(c.info.key, {&out, 1}, plain);
    EXPECT_EQ(r.error.code(), StatusCode::kInvalidArgument);
    // Peek: the index alone.
    auto p = s.Peek(c.info.key);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->namespace_digest, c.info.namespace_digest);
    EXPECT_EQ(p->tier, tier);
    EXPECT_GE(p->record_bytes, flat.size());
    EXPECT_FALSE(s.Peek(MakeChunk(4, {1}).info.key));
  };
  {
    auto s = MustOpen(o);
    ASSERT_EQ(s->Put(c.Request(Durability::kDisk)), PutResult::kStored);
    check(*s, Tier::kDram);
    Forwarding defaults(*s);  // what test doubles get from the base class
    check(defaults, Tier::kDram);
    EXPECT_EQ(s->Stats().dram.io_errors, 0u);  // requests that do not fit are not device errors
    ASSERT_TRUE(s->Close(std::chrono::seconds(5)).ok());
  }
  o.dram.capacity = 0;
  auto s = MustOpen(o);
  check(*s, Tier::kNvme);
  EXPECT_EQ(s->Stats().nvme.io_errors, 0u);
}

TEST(StoreIndexTest, SecondReadFromNvmePromotesToDram) {
  auto mem = std::make_shared<MemDeviceFactory>();
  Options o = TestOptions(mem, 8 * MiB, 64 * MiB);
  TestChunk c = MakeChunk(5, {64 * KiB, 3000});
  TestChunk d = MakeChunk(6, {64 * KiB});
  {
    auto s = MustOpen(o);
    ASSERT_EQ(s->Put(c.Request(Durability::kDisk)), PutResult::kStored);
    ASSERT_EQ(s->Put(d.Request(Durability::kDisk)), PutResult::kStored);
    ASSERT_TRUE(s->Close(std::chrono::seconds(5)).ok());
  }
  auto s = MustOpen(o);  // DRAM starts empty
  bool eq = false;
  EXPECT_EQ(ReadAll(*s, c, &eq).tier, Tier::kNvme);
  EXPECT_TRUE(eq);
  EXPECT_EQ(ReadAll(*s, c, &eq).tier, Tier::kNvme);  // copied into DRAM on the way
  EXPECT_TRUE(eq);
  EXPECT_EQ(ReadAll(*s, c, &eq).tier, Tier::kDram);
  EXPECT_TRUE(eq);
  EXPECT_EQ(s->Peek(c.info.key)->tier, Tier::kDram);
  EXPECT_EQ(s->Stats().promotions, 1u);
  // Partial reads do not promote (the chunk's bytes are not all at hand).
  std::vector<uint8_t> part(4096);
  ScatterEntry e{0, 0, part.size(), part.data()};
  for (int i = 0; i < 3; ++i) EXPECT_EQ(s->Get(d.info.key, {&e, 1}).tier, Tier::kNvme);
  EXPECT_EQ(s->Stats().promotions, 1u);
  // Promotion never evicts: a DRAM tier too small for the record gets no copy.
  Options small = o;
  s.reset();
  small.dram.capacity = 64 * KiB;  // too small for d's record
  s = MustOpen(small);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ReadAll(*s, d, &eq).tier, Tier::kNvme);
  EXPECT_EQ(s->Stats().promotions, 0u);
}

TEST(StoreIndexTest, DramEvictionKeepsStoredChainsPrefixes) {
  // DRAM only: an evicted chunk is gone. Chains are put interleaved, so FIFO order alone
  // would evict ancestors whose descendants stay.
  auto s = MustOpen(TestOptions(nullptr, 2 * MiB, 0));
  std::vector<std::vector<TestChunk>> chains;
  for (int c = 0; c < 16; ++c) {
    chains.push_back(Chain(1000 * c, 6, testing::TestNamespace(), 40 * KiB));
  }
  std::vector<TestChunk> all;
  for (size_t d = 0; d < 6; ++d) {
    for (auto& ch : chains) {
      // As twd does: a chunk is put only under a stored parent.
      if (d > 0 && !s->Peek(ch[d - 1].info.key)) continue;
      ASSERT_EQ(s->Put(ch[d].Request(Durability::kMemory)), PutResult::kStored);
      all.push_back(ch[d]);
    }
  }
  EXPECT_GT(s->Stats().dram.evictions, 20u);
  EXPECT_EQ(Orphans(*s, all), 0);
  int stored = 0;
  for (auto& ch : chains) {
    std::vector<Key> keys;
    for (auto& c : ch) keys.push_back(c.info.key);
    size_t n = 0;
    for (auto& c : ch) n += s->Peek(c.info.key).has_value();
    EXPECT_EQ(s->Lookup(keys, false).prefix, n);  // what is stored is reachable
    stored += int(n);
  }
  EXPECT_GT(stored, 10);
}

TEST(StoreIndexTest, NvmeReclaimKeepsSharedPrefixes) {
  // A shared prefix (a system prompt) put once, then many continuations of it, until the
  // device has been filled several times: FIFO reclaim alone would drop the prefix with its
  // region and leave every later continuation unreachable.
  auto mem = std::make_shared<MemDeviceFactory>();
  auto s = MustOpen(TestOptions(mem, 0, 24 * MiB));
  std::vector<TestChunk> prefix = Chain(1, 3, testing::TestNamespace(), 32 * KiB);
  for (auto& c : prefix) ASSERT_EQ(s->Put(c.Request(Durability::kDisk)), PutResult::kStored);
  std::vector<TestChunk> all = prefix;
  // 2,000 records of 36 KiB: about 70 MiB through a tier of under 21 MiB of regions.
  for (int i = 0; i < 1000; ++i) {
    std::vector<TestChunk> tail = Chain(100 + 10 * i, 2, prefix.back().info.key, 32 * KiB);
    for (auto& c : tail) {
      ASSERT_EQ(s->Put(c.Request(Durability::kMemory)), PutResult::kStored) << i;
      all.push_back(c);
    }
  }
  StoreStats st = s->Stats();
  // At least ~49 MiB of it cannot fit: well over a thousand chunks are gone.
  EXPECT_GT(st.nvme.evictions, 1000u);
  // Rewrites happen when reclaim finds the prefix's region unpinned between reads (timing;
  // NvmeReclaimKeepsSharedPrefixes asserts them).
  for (auto& c : prefix) {
    bool eq;
    ReadAll(*s, c, &eq);
    EXPECT_TRUE(eq);
  }
  EXPECT_EQ(Orphans(*s, all), 0);
  // The newest continuation is reachable through the prefix.
  std::vector<Key> keys;
  for (auto& c : prefix) keys.push_back(c.info.key);
  keys.push_back(all[all.size() - 2].info.key);
  keys.push_back(all.back().info.key);
  EXPECT_EQ(s->Lookup(keys, false).prefix, keys.size());
  // The rewritten copies are the ones found after a restart.
  ASSERT_TRUE(s->Close(std::chrono::seconds(5)).ok());
  s.reset();
  s = MustOpen(TestOptions(mem, 0, 24 * MiB));
  for (auto& c : prefix) {
    bool eq;
    ReadAll(*s, c, &eq);
    EXPECT_TRUE(eq);
  }
}

TEST(StoreIndexTest, ReclaimRewritesWhileChunksAreRead) {
  auto mem = std::make_shared<MemDeviceFactory>();
  auto s = MustOpen(TestOptions(mem, 0, 24 * MiB));
  std::vector<TestChunk> prefix = Chain(1, 4, testing::TestNamespace(), 24 * KiB);
  for (auto& c : prefix) ASSERT_EQ(s->Put(c.Request(Durability::kDisk)), PutResult::kStored);
  std::atomic<bool> done{false};
  std::atomic<int> wrong{0}, hits{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      while (!done) {
        for (auto& c : prefix) {
          bool eq;
          GetResult r = ReadAll(*s, c, &eq);
          if (r.miss == MissReason::kNone) {
            hits++;
            if (!eq) wrong++;
          } else if (r.miss == MissReason::kCorrupt || r.miss == MissReason::kIoError) {
            wrong++;  // a chunk being moved may miss for a moment, never fail
          }
        }
        std::this_thread::yield();  // let reclaim find the prefix's region unpinned
      }
    });
  }
  for (int i = 0; i < 1200; ++i) {
    TestChunk c = MakeChunk(1000 + i, {40 * KiB}, prefix.back().info.key);
    ASSERT_EQ(s->Put(c.Request(Durability::kMemory)), PutResult::kStored) << i;
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(hits.load(), 0);
  StoreStats st = s->Stats();
  EXPECT_EQ(st.nvme.corrupt, 0u);
  // 1,200 records of 44 KiB (about 52 MiB) through under 21 MiB of regions: hundreds go.
  EXPECT_GT(st.nvme.evictions, 500u);
  // Rewrites happen when reclaim finds the prefix's region unpinned between reads (timing;
  // NvmeReclaimKeepsSharedPrefixes asserts them).
  for (auto& c : prefix) {
    bool eq;
    ReadAll(*s, c, &eq);
    EXPECT_TRUE(eq);
  }
}

TEST(StoreIndexTest, QuotaEvictsOldestUnreadLeavesFirst) {
  Options o = TestOptions(nullptr, 8 * MiB, 0);
  o.quotas.push_back({testing::TestNamespace(1).Hex(), 400 * KiB});
  auto s = MustOpen(o);
  const Key ns1 = testing::TestNamespace(1);
  auto chunk = [&](uint64_t id, Key parent) { return MakeChunk(id, {96 * KiB - 4096}, parent, 1); };
  // Four records of 96 KiB fit the 400 KiB quota.
  TestChunk root = chunk(1, ns1);
  TestChunk child = chunk(2, root.info.key);
  TestChunk x3 = chunk(3, ns1), x4 = chunk(4, ns1), x5 = chunk(5, ns1), x6 = chunk(6, ns1);
  for (auto* c : {&root, &child, &x3, &x4}) {
    ASSERT_EQ(s->Put(c->Request(Durability::kMemory)), PutResult::kStored);
  }
  bool eq;
  ReadAll(*s, x3, &eq);  // read: gets another round
  // The oldest, `root`, has a stored child: the oldest leaf goes instead.
  ASSERT_EQ(s->Put(x5.Request(Durability::kMemory)), PutResult::kStored);
  EXPECT_TRUE(s->Peek(root.info.key));
  EXPECT_FALSE(s->Peek(child.info.key));
  EXPECT_EQ(s->Get(child.info.key, {}).miss, MissReason::kEvicted);
  // Next in order: `x3` was read (another round), `x4` was not.
  ASSERT_EQ(s->Put(x6.Request(Durability::kMemory)), PutResult::kStored);
  EXPECT_TRUE(s->Peek(x3.info.key));
  EXPECT_FALSE(s->Peek(x4.info.key));
  EXPECT_TRUE(s->Peek(root.info.key));
  // Now `root` is a leaf and the oldest unread chunk.
  TestChunk x7 = chunk(7, ns1);
  ASSERT_EQ(s->Put(x7.Request(Durability::kMemory)), PutResult::kStored);
  EXPECT_FALSE(s->Peek(root.info.key));
  for (auto* c : {&x3, &x5, &x6, &x7}) EXPECT_TRUE(s->Peek(c->info.key));
  // A quota set later orders the chunks already stored.
  Options later = o;
  later.quotas[0].bytes = 200 * KiB;
  ASSERT_TRUE(s->Reconfigure(later).ok());
  TestChunk x8 = chunk(8, ns1);
  ASSERT_EQ(s->Put(x8.Request(Durability::kMemory)), PutResult::kStored);
  const std::optional<NamespaceUsage> u = UsageOf(*s, ns1);
  ASSERT_TRUE(u) << "the namespace is not listed";
  EXPECT_LE(u->bytes, 200 * KiB);
  EXPECT_GT(u->chunks, 0u);
  EXPECT_TRUE(s->Peek(x8.info.key));
}

}  // namespace
}  // namespace tw::store
