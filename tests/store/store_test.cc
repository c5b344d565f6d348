#include "tw/store/store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include "metadata_format.h"
#include "store_test_util.h"
#include "tw/store/device.h"

namespace tw::store {
namespace {

using namespace testing;  // store_test_util.h

// Counts the bytes every device it opened has read (recovery must read little).
class CountingFactory : public DeviceFactory {
 public:
  explicit CountingFactory(std::shared_ptr<DeviceFactory> inner) : inner_(std::move(inner)) {}
  StatusOr<std::unique_ptr<Device>> Open(const DevicePath& p, uint32_t qd) override {
    TW_ASSIGN_OR_RETURN(auto d, inner_->Open(p, qd));
    return std::unique_ptr<Device>(new Counting(std::move(d), &read_));
  }
  uint64_t read() const { return read_.load(); }
  void reset() { read_ = 0; }

 private:
  class Counting : public Device {
   public:
    Counting(std::unique_ptr<Device> d, std::atomic<uint64_t>* r)
        : Device(d->name(), d->size()), d_(std::move(d)), r_(r) {}

   protected:
    Status SubmitImpl(std::span<const IoRequest> reqs) override {
      for (auto& q : reqs) {
        if (!q.write) *r_ += q.length;
      }
      return d_->Submit(reqs);
    }
    Status SyncImpl() override { return d_->Sync(); }

   private:
    std::unique_ptr<Device> d_;
    std::atomic<uint64_t>* r_;
  };
  std::shared_ptr<DeviceFactory> inner_;
  std::atomic<uint64_t> read_{0};
};

TEST(StoreTest, DramOnlyPutGetExists) {
  auto s = MustOpen(TestOptions(nullptr, 16 * MiB, 0));
  ASSERT_TRUE(s);
  TestChunk c = MakeChunk(1, {10000, 4096, 1});
  EXPECT_EQ(s->Put(c.Request(Durability::kMemory)), PutResult::kStored);
  EXPECT_EQ(s->Put(c.Request(Durability::kMemory)), PutResult::kExists);
  bool eq = false;
  GetResult r = ReadAll(*s, c, &eq);
  EXPECT_TRUE(eq);
  EXPECT_EQ(r.tier, Tier::kDram);
  EXPECT_EQ(r.bytes, c.value_size());
  // A sub-range of one segment.
  std::vector<uint8_t> part(100);
  ScatterEntry e{0, 5000, 100, part.data()};
  r = s->Get(c.info.key, {&e, 1});
  EXPECT_EQ(r.miss, MissReason::kNone);
  EXPECT_EQ(0, memcmp(part.data(), c.segments[0].data() + 5000, 100));
  // Out of range and absent.
  ScatterEntry bad{0, 9990, 100, part.data()};
  EXPECT_NE(s->Get(c.info.key, {&bad, 1}).miss, MissReason::kNone);
  TestChunk d = MakeChunk(2, {10});
  EXPECT_EQ(s->Get(d.info.key, {}).miss, MissReason::kAbsent);
  // Disk durability needs an NVMe tier.
  EXPECT_EQ(s->Put(d.Request(Durability::kDisk)), PutResult::kRejectedAdmission);
  StoreStats st = s->Stats();
  EXPECT_EQ(st.dram.hits, 2u);
  EXPECT_EQ(st.dram.chunks, 1u);
  EXPECT_EQ(st.puts_by_result[size_t(PutResult::kExists)], 1u);
}

TEST(StoreTest, ScatterMustCoverEveryByteOnce) {
  auto s = MustOpen(TestOptions(nullptr, 16 * MiB, 0));
  TestChunk c = MakeChunk(1, {100, 200});
  PutRequest r = c.Request(Durability::kMemory);
  r.data.pop_back();
  EXPECT_EQ(s->Put(r), PutResult::kInvalid);
  r = c.Request(Durability::kMemory);
  r.data.push_back(r.data[0]);
  EXPECT_EQ(s->Put(r), PutResult::kInvalid);
  // Two halves of segment 1 in reverse order are fine.
  r = c.Request(Durability::kMemory);
  uint8_t* p = static_cast<uint8_t*>(r.data[1].addr);
  r.data[1] = {1, 100, 100, p + 100};
  r.data.push_back({1, 0, 100, p});
  EXPECT_EQ(s->Put(r), PutResult::kStored);
  bool eq;
  ReadAll(*s, c, &eq);
  EXPECT_TRUE(eq);
}

TEST(StoreTest, DiskPutsSurviveCleanCloseAndCrash) {
  auto mem = std::make_shared<MemDeviceFactory>();
  Options o = TestOptions(mem, 4 * MiB, 64 * MiB);
  std::vector<TestChunk> chunks;
  for (int i = 0; i < 20; ++i) chunks.push_back(MakeChunk(i, {uint64_t(20000 + i * 999), 8192}));
  {
    auto s = MustOpen(o);
    for (auto& c : chunks) ASSERT_EQ(s->Put(c.Request(Durability::kDisk)), PutResult::kStored);
    ASSERT_TRUE(s->Close(std::chrono::seconds(5)).ok());
  }
  {
    auto s = MustOpen(o);
    for (auto& c : chunks) {
      bool eq;
      GetResult r = ReadAll(*s, c, &eq);
      EXPECT_TRUE(eq) << ToString(r.miss);
      EXPECT_EQ(r.tier, Tier::kNvme);
    }
    auto m = s->Stat(chunks[3].info.key);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->info.tokens, chunks[3].info.tokens);
    EXPECT_EQ(m->info.extra, chunks[3].info.extra);
    EXPECT_EQ(m->info.parent, chunks[3].info.parent);
    EXPECT_EQ(m->value_size, chunks[3].value_size());
    // More puts, then a crash (no Close).
    for (int i = 20; i < 30; ++i) {
      chunks.push_back(MakeChunk(i, {30000}));
      ASSERT_EQ(s->Put(chunks.back().Request(Durability::kDisk)), PutResult::kStored);
    }
  }
  auto s = MustOpen(o);
  for (auto& c : chunks) {
    bool eq;
    ReadAll(*s, c, &eq);
    EXPECT_TRUE(eq);
  }
  uint64_t n = 0;
  s->Export([&](const ChunkMeta&) { return ++n < 1000; });
  EXPECT_EQ(n, chunks.size());
}

TEST(StoreTest, MemoryPutsAreWrittenBackAndDemoted) {
  auto mem = std::make_shared<MemDeviceFactory>();
  auto s = MustOpen(TestOptions(mem, 2 * MiB, 64 * MiB));
  std::vector<TestChunk> chunks;
  for (int i = 0; i < 40; ++i) {
    chunks.push_back(MakeChunk(i, {200 * KiB}));
    ASSERT_EQ(s->Put(chunks.back().Request(Durability::kMemory)), PutResult::kStored);
  }
  int nvme = 0;
  for (auto& c : chunks) {
    bool eq;
    GetResult r = ReadAll(*s, c, &eq);
    EXPECT_TRUE(eq);
    nvme += r.tier == Tier::kNvme;
  }
  EXPECT_GT(nvme, 20);
  StoreStats st = s->Stats();
  EXPECT_GT(st.dram.evictions, 20u);
  EXPECT_EQ(st.dropped_unwritten, 0u);
  // A clean close writes back the rest: all of them come back after reopen.
  ASSERT_TRUE(s->Close(std::chrono::seconds(5)).ok());
  s.reset();
  s = MustOpen(TestOptions(mem, 2 * MiB, 64 * MiB));
  for (auto& c : chunks) {
    bool eq;
    ReadAll(*s, c, &eq);
    EXPECT_TRUE(eq);
  }
}

TEST(StoreTest, CorruptBytesAreAMissAndTheEntryIsDropped) {
  auto f = std::make_shared<FaultDeviceFactory>();
  auto s = MustOpen(TestOptions(f, 0, 64 * MiB));
  TestChunk c = MakeChunk(5, {64 * KiB, 64 * KiB});
  ASSERT_EQ(s->Put(c.Request(Durability::kDisk)), PutResult::kStored);
  auto at = f->state("/dev/test0")->Find({c.segments[1].data(), 64});
  ASSERT_EQ(at.size(), 1u);
  f->state("/dev/test0")->FlipBit(at[0] + 1000, 3);
  // Segment 0 alone is still good; segment 1 is corrupt.
  std::vector<uint8_t> b0(64 * KiB);
  ScatterEntry e0{0, 0, b0.size(), b0.data()};
  EXPECT_EQ(s->Get(c.info.key, {&e0, 1}).miss, MissReason::kNone);
  bool eq = true;
  GetResult r = ReadAll(*s, c, &eq);
  EXPECT_FALSE(eq);
  EXPECT_EQ(r.miss, MissReason::kCorrupt);
  EXPECT_EQ(s->Get(c.info.key, {&e0, 1}).miss, MissReason::kAbsent);
  EXPECT_EQ(s->Stats().nvme.corrupt, 1u);
}

TEST(StoreTest, ForeignDataAndUnknownVersionsAreRefused) {
  auto mem = std::make_shared<MemDeviceFactory>();
  {
    auto d = mem->Open({"/dev/test0", 64 * MiB}, 1);
    ASSERT_TRUE(d.ok());
    std::vector<uint8_t> junk(4096, 0);
    void* p = nullptr;
    ASSERT_EQ(posix_memalign(&p, 4096, 4096), 0);
    memcpy(p, "XFSB", 4);
    ASSERT_TRUE((*d)->Write(8192, p, 4096).ok());
    free(p);
  }
  Options o = TestOptions(mem, 0, 64 * MiB);
  auto s = Store::Open(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("force_format"), std::string_view::npos);
  o.nvme.force_format = true;
  s = Store::Open(o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  s->reset();
  // A superblock of a future format version.
  auto mem2 = std::make_shared<MemDeviceFactory>();
  {
    auto d = mem2->Open({"/dev/test0", 64 * MiB}, 1);
    ASSERT_TRUE(d.ok());
    void* p = nullptr;
    ASSERT_EQ(posix_memalign(&p, 4096, 4096), 0);
    Superblock sb;
    sb.version = kFormatVersion + 1;
    EncodeSuperblock(sb, static_cast<uint8_t*>(p));
    ASSERT_TRUE((*d)->Write(0, p, 4096).ok());
    free(p);
  }
  s = Store::Open(TestOptions(mem2, 0, 64 * MiB));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("version"), std::string_view::npos);
}

TEST(StoreTest, TwoStoresNeverShareAPath) {
  auto dir = std::filesystem::temp_directory_path() / ("tw_store_lock_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  Options o = TestOptions(nullptr, 0, 32 * MiB);
  o.nvme.paths[0].path = (dir / "data").string();
  auto a = Store::Open(o);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = Store::Open(o);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kFailedPrecondition);
  TestChunk c = MakeChunk(1, {100 * KiB});
  EXPECT_EQ((*a)->Put(c.Request(Durability::kDisk)), PutResult::kStored);
  ASSERT_TRUE((*a)->Close(std::chrono::seconds(5)).ok());
  a->reset();
  auto again = Store::Open(o);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  bool eq;
  ReadAll(**again, c, &eq);
  EXPECT_TRUE(eq);
  again->reset();
  std::filesystem::remove_all(dir);
}

TEST(StoreTest, LookupLongestPrefixLeasesAndGhosts) {
  auto s = MustOpen(TestOptions(nullptr, 1 * MiB, 0));
  Key parent = testing::TestNamespace();
  std::vector<TestChunk> chain;
  for (int i = 0; i < 4; ++i) {
    chain.push_back(MakeChunk(i, {50 * KiB}, parent));
    parent = chain.back().info.key;
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(s->Put(chain[i].Request(Durability::kMemory)), PutResult::kStored);
  }
  std::vector<Key> keys;
  for (auto& c : chain) keys.push_back(c.info.key);
  LookupResult r = s->Lookup(keys, true);
  EXPECT_EQ(r.prefix, 3u);
  EXPECT_EQ(r.miss, MissReason::kAbsent);
  EXPECT_NE(r.lease, 0u);
  ASSERT_EQ(r.tiers.size(), 3u);
  // Leased chunks survive pressure; others are evicted and remembered as such.
  std::vector<TestChunk> filler;
  for (int i = 100; i < 130; ++i) {
    filler.push_back(MakeChunk(i, {50 * KiB}));
    ASSERT_EQ(s->Put(filler.back().Request(Durability::kMemory)), PutResult::kStored);
  }
  for (int i = 0; i < 3; ++i) {
    bool eq;
    ReadAll(*s, chain[i], &eq);
    EXPECT_TRUE(eq) << i;
  }
  EXPECT_EQ(s->Get(filler[0].info.key, {}).miss, MissReason::kEvicted);
  s->ReleaseLease(r.lease);
  s->ReleaseLease(r.lease);  // twice is harmless
}

// With report_evictions, every chunk evicted from a DRAM-only store is reported once, with its
// namespace; deletes are not evictions. Without it nothing is kept.
TEST(StoreTest, EvictionsAreReportedWithTheirNamespace) {
  for (bool report : {false, true}) {
    Options o = TestOptions(nullptr, 1 * MiB, 0);
    o.report_evictions = report;
    auto s = MustOpen(o);
    std::vector<TestChunk> chunks;
    for (int i = 0; i < 40; ++i) {
      chunks.push_back(MakeChunk(i, {50 * KiB}, testing::TestNamespace(i % 2), i % 2));
      ASSERT_EQ(s->Put(chunks.back().Request(Durability::kMemory)), PutResult::kStored);
    }
    ASSERT_TRUE(s->Delete(chunks.back().info.key));
    const uint64_t evictions = s->Stats().dram.evictions;
    ASSERT_GT(evictions, 0u);
    std::vector<EvictedChunk> got = s->TakeEvicted(3);
    if (!report) {
      EXPECT_TRUE(got.empty());
      continue;
    }
    EXPECT_EQ(got.size(), 3u);
    for (auto& e : s->TakeEvicted(1000)) got.push_back(e);
    EXPECT_EQ(got.size(), evictions);
    EXPECT_TRUE(s->TakeEvicted(1000).empty());
    for (const EvictedChunk& e : got) {
      auto it = std::find_if(chunks.begin(), chunks.end(),
                             [&](const TestChunk& c) { return c.info.key == e.key; });
      ASSERT_NE(it, chunks.end());
      EXPECT_EQ(e.namespace_digest, it->info.namespace_digest);
      EXPECT_NE(e.key, chunks.back().info.key);
      EXPECT_EQ(s->Get(e.key, {}).miss, MissReason::kEvicted);
    }
  }
}

TEST(StoreTest, QuotaEvictsInsideTheNamespaceFirst) {
  Options o = TestOptions(nullptr, 8 * MiB, 0);
  o.quotas.push_back({testing::TestNamespace(1).Hex(), 400 * KiB});
  auto s = MustOpen(o);
  TestChunk other = MakeChunk(999, {100 * KiB}, testing::TestNamespace(0), 0);
  ASSERT_EQ(s->Put(other.Request(Durability::kMemory)), PutResult::kStored);
  for (int i = 0; i < 8; ++i) {
    TestChunk c = MakeChunk(i, {100 * KiB - 8192}, testing::TestNamespace(1), 1);
    EXPECT_EQ(s->Put(c.Request(Durability::kMemory)), PutResult::kStored);
  }
  const std::optional<NamespaceUsage> u = UsageOf(*s, testing::TestNamespace(1));
  ASSERT_TRUE(u) << "the namespace is not listed";
  EXPECT_LE(u->bytes, 400 * KiB);
  EXPECT_EQ(u->quota, 400 * KiB);
  bool eq;
  ReadAll(*s, other, &eq);
  EXPECT_TRUE(eq);
  TestChunk huge = MakeChunk(50, {1 * MiB}, testing::TestNamespace(1), 1);
  EXPECT_EQ(s->Put(huge.Request(Durability::kMemory)), PutResult::kQuota);
  EXPECT_GT(s->EvictNamespace(testing::TestNamespace(1)), 0u);
}

TEST(StoreTest, AdmissionOnSecondSight) {
  Options o = TestOptions(std::make_shared<MemDeviceFactory>(), 0, 64 * MiB);
  o.admission.policy = AdmissionPolicy::kSecondSight;
  auto s = MustOpen(o);
  TestChunk c = MakeChunk(1, {10 * KiB});
  EXPECT_EQ(s->Put(c.Request(Durability::kDisk)), PutResult::kRejectedAdmission);
  EXPECT_EQ(s->Put(c.Request(Durability::kDisk)), PutResult::kStored);
}

TEST(StoreTest, WriteBudgetRefillsOnTheStoreClock) {
  // 200 KiB a second; records of 64 KiB (a 4 KiB header and 60 KiB of value). The bucket
  // starts full and refills only when the store's clock moves.
  FakeClock clock;
  Options o = TestOptions(std::make_shared<MemDeviceFactory>(), 0, 64 * MiB);
  o.now = clock.Fn();
  o.admission.policy = AdmissionPolicy::kWriteBudget;
  o.admission.write_budget = 200 * KiB;
  auto s = MustOpen(o);
  uint64_t id = 0;
  auto put = [&] { return s->Put(MakeChunk(++id, {60 * KiB}).Request(Durability::kDisk)); };
  for (int i = 0; i < 3; ++i) EXPECT_EQ(put(), PutResult::kStored) << i;
  EXPECT_EQ(put(), PutResult::kRejectedAdmission);  // 8 KiB left
  clock.Advance(std::chrono::seconds(1));           // full again: 200 KiB, not 208
  for (int i = 0; i < 3; ++i) EXPECT_EQ(put(), PutResult::kStored) << i;
  EXPECT_EQ(put(), PutResult::kRejectedAdmission);
  clock.Advance(std::chrono::milliseconds(100));  // 8 + 20 KiB: not enough
  EXPECT_EQ(put(), PutResult::kRejectedAdmission);
  clock.Advance(std::chrono::milliseconds(200));  // 8 + 60 KiB
  EXPECT_EQ(put(), PutResult::kStored);
}

TEST(StoreTest, LeasesExpireOnTheStoreClock) {
  FakeClock clock;
  Options o = TestOptions(nullptr, 1 * MiB, 0);
  o.now = clock.Fn();
  o.lease_duration = std::chrono::seconds(5);
  // LRU: once its lease is gone the leased chunk is the least recently used. (S3-FIFO would
  // keep it: it was read, and the fillers are not.)
  o.dram.eviction = DramEviction::kLru;
  auto s = MustOpen(o);
  TestChunk leased = MakeChunk(1, {50 * KiB});
  ASSERT_EQ(s->Put(leased.Request(Durability::kMemory)), PutResult::kStored);
  const LookupResult r = s->Lookup(std::span<const Key>(&leased.info.key, 1), true);
  ASSERT_EQ(r.prefix, 1u);
  ASSERT_NE(r.lease, 0u);
  uint64_t id = 100;
  auto fill = [&] {  // three times the DRAM tier
    for (int i = 0; i < 60; ++i) {
      ASSERT_EQ(s->Put(MakeChunk(id++, {50 * KiB}).Request(Durability::kMemory)),
                PutResult::kStored);
    }
  };
  ASSERT_NO_FATAL_FAILURE(fill());
  EXPECT_TRUE(s->Peek(leased.info.key)) << "a live lease keeps its chunk";
  clock.Advance(std::chrono::seconds(4));
  ASSERT_NO_FATAL_FAILURE(fill());
  EXPECT_TRUE(s->Peek(leased.info.key)) << "the lease expired a second early";
  clock.Advance(std::chrono::seconds(2));
  ASSERT_NO_FATAL_FAILURE(fill());
  EXPECT_FALSE(s->Peek(leased.info.key)) << "an expired lease still keeps its chunk";
  EXPECT_EQ(s->Get(leased.info.key, {}).miss, MissReason::kEvicted);
  s->ReleaseLease(r.lease);  // expired: harmless
}

TEST(StoreTest, OptionsAreValidated) {
  Options o = TestOptions(std::make_shared<MemDeviceFactory>(), 0, 64 * MiB);
  EXPECT_TRUE(o.Validate().ok());
  auto refused = [](const Options& bad, const char* field) {
    const Status v = bad.Validate();
    EXPECT_EQ(v.code(), StatusCode::kInvalidArgument) << field;
    EXPECT_NE(v.message().find(field), std::string::npos) << v.ToString();
    EXPECT_FALSE(Store::Open(bad).ok()) << field;
  };
  Options bad = o;
  bad.nvme.region_size = 3 * MiB;
  refused(bad, "nvme.region_size");
  bad = o;
  bad.nvme.low_watermark = 0.99;
  refused(bad, "nvme.low_watermark");
  bad = o;
  bad.nvme.paths.push_back(bad.nvme.paths[0]);
  refused(bad, "nvme.paths[1].path");
  bad = o;
  bad.quotas.push_back({"not-hex", 1});
  refused(bad, "quotas[0].namespace_digest");
  bad = o;
  bad.admission = {AdmissionPolicy::kWriteBudget, 0};
  refused(bad, "admission.write_budget");
  bad = o;
  bad.now = nullptr;
  refused(bad, "now");
}

TEST(StoreTest, ValuesLargerThanARegion) {
  auto mem = std::make_shared<MemDeviceFactory>();
  Options o = TestOptions(mem, 0, 64 * MiB);
  TestChunk big = MakeChunk(7, {2 * MiB + 5, 1 * MiB + 4096});
  TestChunk small = MakeChunk(8, {4096});
  {
    auto s = MustOpen(o);
    ASSERT_EQ(s->Put(small.Request(Durability::kDisk)), PutResult::kStored);
    ASSERT_EQ(s->Put(big.Request(Durability::kDisk)), PutResult::kStored);
  }
  auto s = MustOpen(o);
  bool eq;
  ReadAll(*s, big, &eq);
  EXPECT_TRUE(eq);
  ReadAll(*s, small, &eq);
  EXPECT_TRUE(eq);
}

TEST(StoreTest, ReclaimKeepsTheStoreWritable) {
  auto mem = std::make_shared<MemDeviceFactory>();
  auto s = MustOpen(TestOptions(mem, 0, 24 * MiB));
  std::vector<TestChunk> chunks;
  for (int i = 0; i < 200; ++i) {
    chunks.push_back(MakeChunk(i, {256 * KiB}));
    ASSERT_EQ(s->Put(chunks.back().Request(Durability::kDisk)), PutResult::kStored) << i;
  }
  int hits = 0, evicted = 0;
  for (auto& c : chunks) {
    bool eq;
    GetResult r = ReadAll(*s, c, &eq);
    if (r.miss == MissReason::kNone) {
      EXPECT_TRUE(eq);
      ++hits;
    } else {
      EXPECT_EQ(r.miss, MissReason::kEvicted);
      ++evicted;
    }
  }
  EXPECT_GT(hits, 20);
  EXPECT_GT(evicted, 50);
  // The newest chunks are the ones kept (FIFO reclaim).
  bool eq;
  ReadAll(*s, chunks.back(), &eq);
  EXPECT_TRUE(eq);
}

TEST(StoreTest, RecoveryReadsSummariesNotData) {
  auto counting = std::make_shared<CountingFactory>(std::make_shared<MemDeviceFactory>());
  Options o = TestOptions(counting, 0, 400 * MiB, 16 * MiB);
  const int n = 4000;
  std::vector<uint8_t> value(64 * KiB, 0x5A);
  {
    auto s = MustOpen(o);
    for (int i = 0; i < n; ++i) {
      TestChunk c = MakeChunk(i, {});
      c.info.segment_sizes = {value.size()};
      PutRequest r;
      r.chunk = c.info;
      r.durability = Durability::kMemory;
      r.data.push_back({0, 0, value.size(), value.data()});
      ASSERT_EQ(s->Put(r), PutResult::kStored);
    }
    ASSERT_TRUE(s->Close(std::chrono::seconds(10)).ok());
  }
  const uint64_t stored = uint64_t(n) * (value.size() + 4096);
  counting->reset();
  {
    auto s = MustOpen(o);
    EXPECT_LT(counting->read(), stored / 100) << "recovery read " << counting->read();
    EXPECT_EQ(s->Stats().nvme.chunks, uint64_t(n));
    // Crash this time: the open region's records come from the journal.
    for (int i = n; i < n + 50; ++i) {
      TestChunk c = MakeChunk(i, {});
      c.info.segment_sizes = {value.size()};
      PutRequest r;
      r.chunk = c.info;
      r.durability = Durability::kDisk;
      r.data.push_back({0, 0, value.size(), value.data()});
      ASSERT_EQ(s->Put(r), PutResult::kStored);
    }
  }
  counting->reset();
  auto s = MustOpen(o);
  EXPECT_LT(counting->read(), stored / 100);
  EXPECT_EQ(s->Stats().nvme.chunks, uint64_t(n + 50));
}

TEST(StoreTest, ConcurrentPutsAndGets) {
  auto s = MustOpen(TestOptions(std::make_shared<MemDeviceFactory>(), 4 * MiB, 128 * MiB));
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        TestChunk c = MakeChunk(t * 1000 + i, {uint64_t(10 * KiB + i * 1000), 30 * KiB});
        Durability d = i % 3 == 0 ? Durability::kDisk : Durability::kMemory;
        if (s->Put(c.Request(d)) != PutResult::kStored) bad++;
        TestChunk back =
            MakeChunk(t * 1000 + i / 2, {uint64_t(10 * KiB + (i / 2) * 1000), 30 * KiB});
        bool eq;
        GetResult r = ReadAll(*s, back, &eq);
        if (r.miss == MissReason::kNone && !eq) bad++;
        if (r.miss != MissReason::kNone) bad++;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(StoreTest, ReadsFromDramDuringWriteBackNeverSeeAChangingHeader) {
  auto s = MustOpen(TestOptions(std::make_shared<MemDeviceFactory>(), 32 * MiB, 128 * MiB));
  std::vector<TestChunk> chunks;
  for (int i = 0; i < 60; ++i) chunks.push_back(MakeChunk(i, {40 * KiB, 8 * KiB}));
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      while (!done) {
        for (auto& c : chunks) {
          bool eq;
          GetResult r = ReadAll(*s, c, &eq);
          if (r.miss == MissReason::kNone && !eq) bad++;
          if (r.miss == MissReason::kCorrupt) bad++;
        }
      }
    });
  }
  for (auto& c : chunks) ASSERT_EQ(s->Put(c.Request(Durability::kMemory)), PutResult::kStored);
  ASSERT_TRUE(s->Close(std::chrono::seconds(5)).ok());
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(s->Stats().dram.corrupt, 0u);
  EXPECT_EQ(s->Stats().nvme.bytes_written, 60u * 48 * KiB);
}

TEST(StoreTest, DeadlineAndDelete) {
  auto s = MustOpen(TestOptions(nullptr, 4 * MiB, 0));
  TestChunk c = MakeChunk(1, {1000});
  ASSERT_EQ(s->Put(c.Request(Durability::kMemory)), PutResult::kStored);
  std::vector<uint8_t> b(1000);
  ScatterEntry e{0, 0, 1000, b.data()};
  EXPECT_EQ(s->Get(c.info.key, {&e, 1}, Clock::now() - std::chrono::seconds(1)).miss,
            MissReason::kDeadline);
  EXPECT_TRUE(s->Delete(c.info.key));
  EXPECT_FALSE(s->Delete(c.info.key));
  EXPECT_EQ(s->Get(c.info.key, {&e, 1}).miss, MissReason::kAbsent);
  EXPECT_EQ(s->Put(c.Request(Durability::kMemory)), PutResult::kStored);
}

}  // namespace
}  // namespace tw::store
