// Crash consistency over the fault-injecting device: hundreds of cycles of concurrent puts,
// gets and deletes cut short by a power loss (unsynced writes dropped, kept or torn at 512
// bytes), a failing device, or a clean close. After every restart: each disk-acknowledged
// chunk is readable and byte-exact, a chunk whose Delete returned true never comes back
// (unless put again, disk-acknowledged, after the delete: then it always does), and no get
// ever returns wrong bytes.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "record_format.h"
#include "store_test_util.h"
#include "tw/store/device.h"
#include "tw/store/store.h"

namespace tw::store {
namespace {

using namespace testing;  // store_test_util.h
constexpr char kPath[] = "/dev/crash0";

// TW_CRASH_SEED and TW_CRASH_CYCLES vary the runs (the `long` test uses them).
uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : fallback;
}

struct Model {
  std::mutex mu;
  std::map<uint64_t, std::vector<uint64_t>> attempted;  // id → segment sizes
  std::set<uint64_t> acked;                             // disk-acknowledged, not deleted
  std::set<uint64_t> deleted;                           // Delete returned true, not put since
  int deletes = 0;                                      // Delete calls that returned true
  int reputs = 0;                                       // deleted chunks put again (acked)
};

TestChunk ChunkOf(uint64_t id, const std::vector<uint64_t>& sizes) { return MakeChunk(id, sizes); }

std::vector<uint64_t> RandomSizes(std::mt19937_64& rng) {
  std::vector<uint64_t> s;
  int n = 1 + int(rng() % 3);
  for (int i = 0; i < n; ++i) s.push_back(1 + rng() % (48 * KiB));
  if (rng() % 4 == 0) s[0] = 4096 * (1 + rng() % 8);  // aligned: direct reads
  return s;
}

Options CrashOptions(std::shared_ptr<FaultDeviceFactory> f) {
  Options o;
  o.dram.capacity = 1 * MiB;
  // Every crash leaves a partly filled region behind: room for all cycles (up to twice
  // TW_CRASH_CYCLES, see below) without reclaim.
  o.nvme.paths.push_back({kPath, 256 * MiB + EnvOr("TW_CRASH_CYCLES", 150) * 4 * MiB});
  o.nvme.region_size = 1 * MiB;
  o.nvme.stripe_unit = 128 * KiB;
  o.device_factory = std::move(f);
  return o;
}

// Runs one session: a writer thread against `store` until `stop`.
void Session(Store& store, Model& m, uint64_t& next_id, std::atomic<bool>& stop,
             std::atomic<int>& wrong, uint64_t seed, int max_puts) {
  std::mt19937_64 rng(seed);
  int puts = 0;
  while (!stop.load() && puts < max_puts) {
    int op = int(rng() % 10);
    if (op < 6) {
      uint64_t id = next_id++;
      auto sizes = RandomSizes(rng);
      TestChunk c = ChunkOf(id, sizes);
      Durability d = rng() % 2 ? Durability::kDisk : Durability::kMemory;
      {
        std::lock_guard<std::mutex> l(m.mu);
        m.attempted[id] = sizes;
      }
      PutResult r = store.Put(c.Request(d));
      ++puts;
      if (r == PutResult::kStored && d == Durability::kDisk) {
        std::lock_guard<std::mutex> l(m.mu);
        m.acked.insert(id);
      }
    } else if (op < 9) {
      uint64_t id;
      std::vector<uint64_t> sizes;
      {
        std::lock_guard<std::mutex> l(m.mu);
        if (m.attempted.empty()) continue;
        auto it = m.attempted.lower_bound(rng() % next_id);
        if (it == m.attempted.end()) it = m.attempted.begin();
        id = it->first;
        sizes = it->second;
      }
      bool eq;
      GetResult r = ReadAll(store, ChunkOf(id, sizes), &eq);
      if (r.miss == MissReason::kNone && !eq) wrong++;
    } else if (rng() % 2) {
      std::lock_guard<std::mutex> l(m.mu);
      if (m.acked.empty()) continue;
      auto it = m.acked.lower_bound(rng() % next_id);
      if (it == m.acked.end()) it = m.acked.begin();
      uint64_t id = *it;
      m.acked.erase(id);  // uncertain until Delete answers
      if (store.Delete(ChunkOf(id, m.attempted[id]).info.key)) {
        m.deleted.insert(id);
        m.deletes++;
      }
    } else {
      // Put a deleted chunk again (same key and bytes): it must be back after any stop.
      std::lock_guard<std::mutex> l(m.mu);
      if (m.deleted.empty()) continue;
      uint64_t id = *m.deleted.begin();
      m.deleted.erase(id);  // uncertain until the put answers
      PutResult r = store.Put(ChunkOf(id, m.attempted[id]).Request(Durability::kDisk));
      ++puts;
      if (r == PutResult::kStored) {
        m.acked.insert(id);
        m.reputs++;
      }
    }
  }
}

void VerifyAfterRestart(Store& store, Model& m, int cycle) {
  for (auto& [id, sizes] : m.attempted) {
    bool eq;
    GetResult r = ReadAll(store, ChunkOf(id, sizes), &eq);
    if (m.acked.count(id)) {
      ASSERT_TRUE(eq) << "cycle " << cycle << ": disk-acknowledged chunk " << id
                      << " lost: " << ToString(r.miss);
    } else if (m.deleted.count(id)) {
      ASSERT_NE(r.miss, MissReason::kNone)
          << "cycle " << cycle << ": deleted chunk " << id << " came back";
    } else if (r.miss == MissReason::kNone) {
      ASSERT_TRUE(eq) << "cycle " << cycle << ": chunk " << id << " served wrong bytes";
    }
  }
}

TEST(CrashTest, RandomPowerCutsNeverLoseAcknowledgedChunks) {
  auto f = std::make_shared<FaultDeviceFactory>();
  Model m;
  uint64_t next_id = 1;
  std::atomic<int> wrong{0};
  std::mt19937_64 rng(EnvOr("TW_CRASH_SEED", 12345));
  const int cycles = int(EnvOr("TW_CRASH_CYCLES", 150));
  // How much a cycle does depends on the machine (its stop lands after a random pause), so
  // the run goes on past `cycles`, up to twice as many, until it has covered what the checks
  // at the end need: acknowledged chunks, deletes and chunks put again after a delete.
  auto covered = [&m] { return m.acked.size() > 100u && m.deletes > 20 && m.reputs > 5; };
  for (int cycle = 0; cycle < cycles || (!covered() && cycle < 2 * cycles); ++cycle) {
    auto opened = Store::Open(CrashOptions(f));
    ASSERT_TRUE(opened.ok()) << "cycle " << cycle << ": " << opened.status().ToString();
    std::unique_ptr<Store> store = std::move(*opened);
    VerifyAfterRestart(*store, m, cycle);
    if (::testing::Test::HasFatalFailure()) return;
    ASSERT_EQ(store->Stats().nvme.evictions, 0u) << "test too large: reclaim evicted chunks";
    std::atomic<bool> stop{false};
    std::thread writer(Session, std::ref(*store), std::ref(m), std::ref(next_id), std::ref(stop),
                       std::ref(wrong), rng(), 20);
    int ending = int(rng() % 10);
    // Chaos, not a wait: the stop lands at a random moment of the writer's work, mid-I/O or
    // not (a power cut also unblocks a writer that waits for the device).
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 4000));
    auto state = f->state(kPath);
    if (ending < 7) {
      state->PowerCut(ending < 3 ? FaultState::CutMode::kDropAll : FaultState::CutMode::kRandom,
                      rng());
      stop = true;
      writer.join();
      store.reset();  // the process "dies"
      state->Revive();
    } else if (ending < 8) {
      state->SetFailAll(true);  // the device vanishes, then the process dies
      stop = true;
      writer.join();
      store.reset();
      state->Revive();
    } else {
      stop = true;
      writer.join();
      ASSERT_TRUE(store->Close(std::chrono::seconds(5)).ok());
      store.reset();
    }
  }
  auto last = Store::Open(CrashOptions(f));
  ASSERT_TRUE(last.ok());
  VerifyAfterRestart(**last, m, cycles);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(m.acked.size(), 100u);
  EXPECT_GT(m.deletes, 20);
  EXPECT_GT(m.reputs, 5);
}

TEST(CrashTest, FailedReadsAndWritesKeepTheStoreConsistent) {
  auto f = std::make_shared<FaultDeviceFactory>();
  Model m;
  uint64_t next_id = 1;
  std::atomic<int> wrong{0};
  std::mt19937_64 rng(EnvOr("TW_CRASH_SEED", 777));
  const int cycles = int(EnvOr("TW_CRASH_CYCLES", 150)) / 4 + 2;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    auto opened = Store::Open(CrashOptions(f));
    ASSERT_TRUE(opened.ok()) << "cycle " << cycle << ": " << opened.status().ToString();
    std::unique_ptr<Store> store = std::move(*opened);
    VerifyAfterRestart(*store, m, cycle);
    if (::testing::Test::HasFatalFailure()) return;
    auto state = f->state(kPath);
    state->FailNthWrite(1 + rng() % 30);
    state->FailNthRead(1 + rng() % 30);
    std::atomic<bool> stop{false};
    Session(*store, m, next_id, stop, wrong, rng(), 30);
    // The store keeps serving after errors: a fresh put succeeds once the device is healthy.
    state->FailNthWrite(0);
    state->FailNthRead(0);
    TestChunk c = ChunkOf(next_id, {5000});
    m.attempted[next_id++] = {5000};
    PutResult r = store->Put(c.Request(Durability::kDisk));
    ASSERT_EQ(r, PutResult::kStored) << "cycle " << cycle;
    m.acked.insert(next_id - 1);
    if (cycle % 2) {
      state->PowerCut(FaultState::CutMode::kRandom, rng());
      store.reset();
      state->Revive();
    } else {
      ASSERT_TRUE(store->Close(std::chrono::seconds(5)).ok());
    }
  }
  EXPECT_EQ(wrong.load(), 0);
}

TEST(CrashTest, FlippedBitsAreNeverServed) {
  auto f = std::make_shared<FaultDeviceFactory>();
  Options o = CrashOptions(f);
  o.dram.capacity = 0;
  auto s = Store::Open(o);
  ASSERT_TRUE(s.ok());
  std::vector<TestChunk> chunks;
  for (int i = 0; i < 30; ++i) {
    chunks.push_back(MakeChunk(i, {uint64_t(3000 + i * 500), 8192}));
    ASSERT_EQ((*s)->Put(chunks.back().Request(Durability::kDisk)), PutResult::kStored);
  }
  auto state = f->state(kPath);
  std::mt19937_64 rng(5);
  int flipped = 0;
  for (int i = 0; i < 30; i += 2) {
    // Every other chunk: one bit flipped in its record header (past the magic and the format
    // version, anywhere in the header's 4 KiB: key, sizes, extra bytes, tokens, padding, all
    // under the header checksum), or in the first 2000 bytes of one of its two segments.
    const TestChunk& c = chunks[i];
    const bool header = i % 4 == 0;
    const int segment = header ? 0 : int(rng() % 2);
    auto at = state->Find({c.segments[segment].data(), 64});
    ASSERT_EQ(at.size(), 1u) << "chunk " << i;
    if (header) {
      const RecordLayout layout = ComputeLayout(c.info);
      const uint64_t record = at[0] - layout.segment_offsets[0];
      state->FlipBit(record + 8 + rng() % (layout.header_len - 8), int(rng() % 8));
    } else {
      state->FlipBit(at[0] + rng() % 2000, int(rng() % 8));
    }
    ++flipped;
  }
  int corrupt = 0;
  for (auto& c : chunks) {
    bool eq;
    GetResult r = ReadAll(**s, c, &eq);
    if (r.miss == MissReason::kNone) {
      EXPECT_TRUE(eq);
    } else {
      EXPECT_EQ(r.miss, MissReason::kCorrupt);
      ++corrupt;
    }
  }
  EXPECT_EQ(corrupt, flipped);
}

}  // namespace
}  // namespace tw::store
