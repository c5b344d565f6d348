// tw-bench engine: the storage engine's put to NVMe (durability disk), get from NVMe with the
// DRAM tier bypassed, and get from DRAM, each next to its reference measured in the same run
// on the same file system (raw O_DIRECT write + fdatasync per chunk, raw O_DIRECT read,
// memcpy); gets that promote chunks from NVMe into DRAM against the first get from NVMe; then
// index memory per chunk and reopen time of a store of many small chunks.
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include "command.h"
#include "reference.h"
#include "report.h"
#include "tw/common/keys.h"
#include "tw/common/log.h"
#include "tw/common/units.h"
#include "tw/store/store.h"

namespace tw::bench {
namespace {

using Clock = std::chrono::steady_clock;
using store::Durability;

struct EngineOptions {
  std::string dir = ".";
  bool json = false;
  std::string chunk_size = "32MiB";
  uint32_t chunks = 32;
  uint32_t segments = 32;
  uint32_t reopen_chunks = 100000;
  std::string reopen_chunk_size = "64KiB";
  uint32_t queue_depth = 32;
  std::string stripe_unit = "4MiB";
  bool pinned = false;
};

double Since(Clock::time_point a) {
  return std::chrono::duration<double>(Clock::now() - a).count();
}

// Pre-faulted, 4 KiB-aligned memory.
struct Buffer {
  explicit Buffer(uint64_t n) : size(n) {
    void* p =
        mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    data = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
    if (data) {
      for (uint64_t i = 0; i < n; ++i) data[i] = uint8_t(i * 131 + 7);
    }
  }
  ~Buffer() {
    if (data) munmap(data, size);
  }
  uint64_t size;
  uint8_t* data;
};

Key ChunkKeyOf(uint64_t i) {
  uint32_t t[2] = {uint32_t(i), uint32_t(i >> 32)};
  Namespace ns;
  ns.model = "tw-bench";
  ns.chunk_tokens = "2";
  return ChunkKey(NamespaceDigest(ns), {}, t);
}

store::PutRequest MakePut(uint64_t i, const Buffer& b, uint32_t segments, Durability d) {
  store::PutRequest r;
  Namespace ns;
  ns.model = "tw-bench";
  ns.chunk_tokens = "2";
  r.chunk.namespace_digest = NamespaceDigest(ns);
  r.chunk.parent = r.chunk.namespace_digest;
  r.chunk.key = ChunkKeyOf(i);
  r.chunk.tokens = {uint32_t(i), uint32_t(i >> 32)};
  uint64_t seg = b.size / segments;
  for (uint32_t s = 0; s < segments; ++s) {
    r.chunk.segment_sizes.push_back(seg);
    r.data.push_back({s, 0, seg, b.data + s * seg});
  }
  r.durability = d;
  return r;
}

std::vector<store::ScatterEntry> GetRanges(const Buffer& b, uint32_t segments) {
  std::vector<store::ScatterEntry> v;
  uint64_t seg = b.size / segments;
  for (uint32_t s = 0; s < segments; ++s) v.push_back({s, 0, seg, b.data + s * seg});
  return v;
}

StatusOr<std::unique_ptr<store::Store>> OpenStore(const std::string& path, uint64_t capacity,
                                                  uint64_t dram, const EngineOptions& o,
                                                  uint64_t stripe) {
  store::Options so;
  so.dram.capacity = dram;
  so.dram.pinned = o.pinned;
  if (!path.empty()) {
    so.nvme.paths.push_back({path, capacity});
    so.nvme.queue_depth = o.queue_depth;
    so.nvme.stripe_unit = stripe;
  }
  return store::Store::Open(so);
}

int Fail(const Status& s) {
  std::fprintf(stderr, "tw-bench engine: %s\n", s.ToString().c_str());
  return 1;
}

int RunEngine(const EngineOptions& o) {
  log::SetLevel(log::Level::kWarn);
  auto cs = ParseByteSize(o.chunk_size, "--chunk-size");
  auto rcs = ParseByteSize(o.reopen_chunk_size, "--reopen-chunk-size");
  auto su = ParseByteSize(o.stripe_unit, "--stripe-unit");
  if (!cs.ok()) return Fail(cs.status());
  if (!rcs.ok()) return Fail(rcs.status());
  if (!su.ok()) return Fail(su.status());
  const uint64_t chunk = *cs / o.segments / 4096 * 4096 * o.segments;
  const uint64_t total = chunk * o.chunks;
  std::filesystem::create_directories(o.dir);
  const std::string ref_path = (std::filesystem::path(o.dir) / "tw-bench-reference.dat").string();
  const std::string store_path = (std::filesystem::path(o.dir) / "tw-bench-store.dat").string();
  std::filesystem::remove(ref_path);
  std::filesystem::remove(store_path);
  std::vector<Result> out;

  // References.
  const double memcpy_gbps = MemcpyGBps(chunk, 10);
  out.push_back({"reference.memcpy", memcpy_gbps, "GB/s", std::nullopt});
  // The engine writes a record as one range split at stripe units, and reads a chunk as one
  // request per segment (split at stripe units): the references use the same request sizes.
  DirectIoShape shape{ref_path, total, *su, chunk, o.queue_depth};
  auto wr = DirectWriteSyncGBps(shape);
  if (!wr.ok()) return Fail(wr.status());
  shape.io_size = std::min<uint64_t>(*su, chunk / o.segments);
  auto rd = DirectReadGBps(shape);
  if (!rd.ok()) return Fail(rd.status());
  std::filesystem::remove(ref_path);
  out.push_back({"reference.odirect_write_fdatasync", *wr, "GB/s", std::nullopt});
  out.push_back({"reference.odirect_read", *rd, "GB/s", std::nullopt});

  Buffer data(chunk), dest(chunk);
  if (!data.data || !dest.data) return Fail(ResourceExhaustedError("out of memory"));
  const uint64_t store_cap = total + total / 4 + (512ull << 20);
  {
    // Put with durability disk through a small DRAM tier.
    auto s = OpenStore(store_path, store_cap, 4 * chunk, o, *su);
    if (!s.ok()) return Fail(s.status());
    auto t = Clock::now();
    for (uint32_t i = 0; i < o.chunks; ++i) {
      auto r = (*s)->Put(MakePut(i, data, o.segments, Durability::kDisk));
      if (r != store::PutResult::kStored) {
        return Fail(InternalError(std::string("put: ") + std::string(store::ToString(r))));
      }
    }
    out.push_back({"engine.put_nvme_disk", double(total) / Since(t) / 1e9, "GB/s", *wr});
    Status c = (*s)->Close(std::chrono::seconds(30));
    if (!c.ok()) return Fail(c);
  }
  {
    // Get from NVMe: reopened without a DRAM tier.
    auto s = OpenStore(store_path, store_cap, 0, o, *su);
    if (!s.ok()) return Fail(s.status());
    auto ranges = GetRanges(dest, o.segments);
    auto t = Clock::now();
    for (uint32_t i = 0; i < o.chunks; ++i) {
      auto r = (*s)->Get(ChunkKeyOf(i), ranges);
      if (r.miss != store::MissReason::kNone) {
        return Fail(InternalError(std::string("get: ") + std::string(store::ToString(r.miss))));
      }
    }
    out.push_back({"engine.get_nvme", double(total) / Since(t) / 1e9, "GB/s", *rd});
    if (std::memcmp(dest.data, data.data, chunk) != 0) {
      return Fail(DataLossError("get returned different bytes"));
    }
    (*s)->Close(std::chrono::seconds(5)).IgnoreError();
  }
  {
    // Promotion: reopened with a DRAM tier; the second get of a chunk from NVMe copies it
    // into DRAM, the third is served from there.
    const uint32_t n = std::min<uint32_t>(o.chunks, 8);
    auto s = OpenStore(store_path, store_cap, uint64_t(n) * (chunk + (1 << 20)) * 2, o, *su);
    if (!s.ok()) return Fail(s.status());
    auto ranges = GetRanges(dest, o.segments);
    double pass_gbps[3] = {0, 0, 0};
    for (int pass = 0; pass < 3; ++pass) {
      auto t = Clock::now();
      uint64_t bytes = 0;
      for (uint32_t i = 0; i < n; ++i) {
        auto r = (*s)->Get(ChunkKeyOf(i), ranges);
        if (r.miss != store::MissReason::kNone) return Fail(InternalError("promotion get missed"));
        if (pass == 2 && r.tier != store::Tier::kDram) {
          return Fail(InternalError("third get not served from DRAM"));
        }
        bytes += r.bytes;
      }
      pass_gbps[pass] = double(bytes) / Since(t) / 1e9;
    }
    if (std::memcmp(dest.data, data.data, chunk) != 0) {
      return Fail(DataLossError("promoted get returned different bytes"));
    }
    out.push_back({"engine.get_nvme_promoting", pass_gbps[1], "GB/s", pass_gbps[0]});
    out.push_back({"engine.get_after_promotion", pass_gbps[2], "GB/s", pass_gbps[0]});
    out.push_back({"engine.promotions", double((*s)->Stats().promotions), "chunks", std::nullopt});
    (*s)->Close(std::chrono::seconds(5)).IgnoreError();
  }
  std::filesystem::remove(store_path);
  {
    // Get from DRAM.
    const uint32_t n = std::min<uint32_t>(o.chunks, 8);
    auto s = OpenStore("", 0, uint64_t(n) * (chunk + (1 << 20)) * 2, o, *su);
    if (!s.ok()) return Fail(s.status());
    for (uint32_t i = 0; i < n; ++i) {
      if ((*s)->Put(MakePut(i, data, o.segments, Durability::kMemory)) !=
          store::PutResult::kStored) {
        return Fail(InternalError("dram put failed"));
      }
    }
    auto ranges = GetRanges(dest, o.segments);
    // Alternated with memcpy of the same size, best of each: on a shared machine the memory
    // bandwidth moves from one second to the next.
    double best = 0, best_memcpy = memcpy_gbps;
    for (int rep = 0; rep < 7; ++rep) {
      best_memcpy = std::max(best_memcpy, MemcpyGBps(chunk, 1));
      auto t = Clock::now();
      uint64_t bytes = 0;
      for (uint32_t i = 0; i < n; ++i) bytes += (*s)->Get(ChunkKeyOf(i), ranges).bytes;
      if (bytes != chunk * n) return Fail(InternalError("dram get missed"));
      best = std::max(best, double(bytes) / Since(t) / 1e9);
    }
    if (std::memcmp(dest.data, data.data, chunk) != 0) {
      return Fail(DataLossError("dram get returned different bytes"));
    }
    out.push_back({"engine.get_dram", best, "GB/s", best_memcpy});
    // The store's share of a service lookup: the longest stored prefix of a 512-chunk chain
    // (keys only, no value bytes move).
    Buffer tiny(4096);
    std::vector<Key> chain;
    for (uint32_t i = 0; i < 512; ++i) {
      const uint64_t id = 1'000'000 + i;
      if ((*s)->Put(MakePut(id, tiny, 1, Durability::kMemory)) != store::PutResult::kStored) {
        return Fail(InternalError("lookup chain put failed"));
      }
      chain.push_back(ChunkKeyOf(id));
    }
    std::vector<double> us;
    for (int i = 0; i < 2000; ++i) {
      auto t = Clock::now();
      const store::LookupResult r = (*s)->Lookup(chain, false);
      us.push_back(Since(t) * 1e6);
      if (r.prefix != chain.size()) return Fail(InternalError("lookup missed"));
    }
    std::sort(us.begin(), us.end());
    out.push_back({"engine.lookup_512_chain_p50", us[us.size() / 2], "us", std::nullopt});
  }
  if (o.reopen_chunks > 0) {
    // Many small chunks: index memory and reopen time.
    const uint64_t small = *rcs;
    Buffer sb(small);
    const uint64_t cap = uint64_t(o.reopen_chunks) * (small + 4096) * 11 / 10 + (1ull << 30);
    {
      auto s = OpenStore(store_path, cap, 0, o, *su);
      if (!s.ok()) return Fail(s.status());
      // Filled by several threads: one thread waits out each write's device latency.
      const uint32_t threads = 8;
      std::atomic<uint32_t> failed{0};
      std::vector<std::thread> ts;
      auto t = Clock::now();
      for (uint32_t k = 0; k < threads; ++k) {
        ts.emplace_back([&, k] {
          for (uint32_t i = k; i < o.reopen_chunks; i += threads) {
            if ((*s)->Put(MakePut(i, sb, 1, Durability::kMemory)) != store::PutResult::kStored) {
              failed++;
            }
          }
        });
      }
      for (auto& th : ts) th.join();
      if (failed) return Fail(InternalError("small puts failed"));
      out.push_back({"engine.put_small_chunks_8_threads", o.reopen_chunks / Since(t), "puts/s",
                     std::nullopt});
      Status c = (*s)->Close(std::chrono::seconds(60));
      if (!c.ok()) return Fail(c);
    }
    auto t = Clock::now();
    auto s = OpenStore(store_path, cap, 0, o, *su);
    if (!s.ok()) return Fail(s.status());
    out.push_back({"engine.reopen_clean", Since(t), "s", std::nullopt});
    store::StoreStats st = (*s)->Stats();
    out.push_back({"engine.reopen_clean_chunks", double(st.nvme.chunks), "chunks", std::nullopt});
    out.push_back({"engine.index_bytes_per_chunk",
                   double(st.index_bytes) / double(std::max<uint64_t>(st.nvme.chunks, 1)), "B",
                   std::nullopt});
    for (uint32_t i = 0; i < 100; ++i) {
      (*s)->Put(MakePut(o.reopen_chunks + i, sb, 1, Durability::kDisk));
    }
    s->reset();  // a crash: no clean summary for the open region
    t = Clock::now();
    auto again = OpenStore(store_path, cap, 0, o, *su);
    if (!again.ok()) return Fail(again.status());
    out.push_back({"engine.reopen_after_crash", Since(t), "s", std::nullopt});
    out.push_back({"engine.reopen_after_crash_chunks", double((*again)->Stats().nvme.chunks),
                   "chunks", std::nullopt});
    again->reset();
    std::filesystem::remove(store_path);
  }
  Print(out, o.json);
  return 0;
}

}  // namespace

Command AddEngineCommand(CLI::App& parent) {
  auto o = std::make_shared<EngineOptions>();
  CLI::App* c = parent.add_subcommand(
      "engine", "storage engine: NVMe put/get and DRAM get against raw O_DIRECT and memcpy");
  c->add_option("--dir", o->dir, "directory for the data files (the file system under test)");
  c->add_flag("--json", o->json, "one JSON object per line");
  c->add_option("--chunk-size", o->chunk_size, "value size of a chunk (default 32MiB)");
  c->add_option("--chunks", o->chunks, "chunks per measurement (default 32)");
  c->add_option("--segments", o->segments, "segments per chunk (default 32: one per layer)");
  c->add_option("--reopen-chunks", o->reopen_chunks,
                "small chunks for the index and reopen figures (default 100000; 0 skips)");
  c->add_option("--reopen-chunk-size", o->reopen_chunk_size, "their size (default 64KiB)");
  c->add_option("--queue-depth", o->queue_depth, "io_uring queue depth (default 32)");
  c->add_option("--stripe-unit", o->stripe_unit, "I/O size of the engine (default 4MiB)");
  c->add_flag("--pinned", o->pinned,
              "mlock the DRAM tier and register it with io_uring (dram.pinned: true)");
  return {c, [o] { return RunEngine(*o); }};
}

}  // namespace tw::bench
