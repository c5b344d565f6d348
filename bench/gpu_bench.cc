// `tw-bench gpu`: the paged KV copy engine (tw_gpu's PagedKvCopier) against plain copies of the
// same bytes, measured in the same run.
//
// With the CUDA backend (a GPU visible): a chunk in pinned host memory scattered into paged
// blocks (load) and gathered back (save), against one cudaMemcpyAsync of the same bytes
// host-to-device (and device-to-host) from pinned memory. With the CPU backend (no GPU, or
// --backend cpu): the same transfers against one memcpy of the same bytes, and the queue's
// per-chunk overhead (a transfer of one tiny block per layer, start to last event, and the
// time spent in Start alone). Figures, not pass/fail.
#include "gpu_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "report.h"
#include "tw/common/strings.h"
#include "tw/gpu/cpu_backend.h"
#include "tw/gpu/cuda_backend.h"
#include "tw/gpu/paged_kv_copier.h"

namespace tw::bench {
namespace {

using Clock = std::chrono::steady_clock;
double Secs(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// One device allocation holding the paged cache, laid out as `o.layout` says.
struct Cache {
  void* device = nullptr;
  gpu::KvLayout layout;
};

StatusOr<Cache> MakeCache(gpu::Backend& b, const GpuBenchOptions& o, uint64_t num_blocks) {
  const uint32_t planes = o.layout == "mla" ? 1 : 2;
  if (o.layout != "mla" && o.layout != "flash_attn" && o.layout != "flashinfer") {
    return InvalidArgumentError("--layout: flash_attn, flashinfer or mla");
  }
  Cache c;
  c.layout = {.num_layers = o.layers,
              .planes_per_layer = planes,
              .plane_block_bytes = o.block_size * o.token_bytes,
              .block_size = o.block_size,
              .num_blocks = num_blocks};
  const uint64_t bb = c.layout.plane_block_bytes;
  const uint64_t layer_bytes = planes * num_blocks * bb;
  TW_ASSIGN_OR_RETURN(c.device, b.AllocateDevice(layer_bytes * o.layers));
  const auto base = reinterpret_cast<std::uintptr_t>(c.device);
  for (uint32_t l = 0; l < o.layers; ++l) {
    for (uint32_t p = 0; p < planes; ++p) {
      if (o.layout == "flashinfer") {
        c.layout.planes.push_back({base + l * layer_bytes + p * bb, planes * bb});
      } else {
        c.layout.planes.push_back({base + l * layer_bytes + p * num_blocks * bb, bb});
      }
    }
  }
  return c;
}

// Runs of `run` consecutive blocks at shuffled places: a cache some time after start-up.
std::vector<int32_t> Table(uint32_t n, uint32_t run, uint64_t num_blocks, uint32_t seed) {
  std::vector<uint32_t> starts;
  for (uint64_t s = 0; s + run <= num_blocks; s += run) starts.push_back(s);
  std::mt19937 rng(seed);
  std::shuffle(starts.begin(), starts.end(), rng);
  std::vector<int32_t> t;
  for (uint32_t s : starts) {
    for (uint32_t i = 0; i < run && t.size() < n; ++i) t.push_back(static_cast<int32_t>(s + i));
    if (t.size() == n) break;
  }
  return t;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "tw-bench gpu: %s\n", s.ToString().c_str());
  return 2;
}

}  // namespace

int RunGpuBench(const GpuBenchOptions& o) {
  std::shared_ptr<gpu::Backend> backend;
  static const gpu::CudaLibraries libs = gpu::CudaLibraries::Load();
  std::fprintf(stderr, "tw-bench gpu: %s\n", libs.availability().Describe().c_str());
  if (o.backend == "cuda" || (o.backend == "auto" && libs.runtime() != nullptr)) {
    auto b = gpu::CudaBackend::Create(libs, o.device);
    if (!b.ok()) return Fail(b.status());
    backend = std::move(*b);
  } else if (o.backend == "cpu" || o.backend == "auto") {
    backend = std::make_shared<gpu::CpuBackend>();
  } else {
    return Fail(InvalidArgumentError("--backend: auto, cpu or cuda"));
  }
  const bool cuda = backend->name() == "cuda";
  if (o.block_size == 0 || o.chunk_tokens % o.block_size != 0 || o.run_blocks == 0 ||
      o.layers == 0 || o.token_bytes == 0 || o.iterations <= 0) {
    return Fail(InvalidArgumentError(
        "block size must divide chunk tokens; layers, token bytes, runs, iterations > 0"));
  }
  const uint32_t n_blocks = o.chunk_tokens / o.block_size;
  const uint64_t num_blocks = std::max<uint64_t>(4 * n_blocks, n_blocks + o.run_blocks);
  auto cache = MakeCache(*backend, o, num_blocks);
  if (!cache.ok()) return Fail(cache.status());
  auto copier = gpu::PagedKvCopier::Create(backend, cache->layout);
  if (!copier.ok()) return Fail(copier.status());
  const uint64_t seg = cache->layout.SegmentBytes(n_blocks);
  const uint64_t chunk = seg * o.layers;
  auto host = backend->AllocateHost(chunk);  // cudaMallocHost with CUDA: pinned
  auto stream = backend->CreateStream();
  if (!host.ok()) return Fail(host.status());
  if (!stream.ok()) return Fail(stream.status());
  auto* h = static_cast<uint8_t*>(*host);
  for (uint64_t i = 0; i < chunk; i += 4096) h[i] = static_cast<uint8_t>(i >> 12);
  std::vector<uint64_t> offsets(o.layers);
  for (uint32_t l = 0; l < o.layers; ++l) offsets[l] = l * seg;
  const std::vector<int32_t> table = Table(n_blocks, o.run_blocks, num_blocks, 7);

  // One transfer, start to last event; returns seconds, the copies issued via *copies.
  auto transfer = [&](gpu::KvDirection dir, uint64_t* copies) -> StatusOr<double> {
    const auto t0 = Clock::now();
    TW_ASSIGN_OR_RETURN(auto t, (*copier)->Start({.direction = dir,
                                                  .block_table = table,
                                                  .host_base = h,
                                                  .host_size = chunk,
                                                  .layer_offsets = offsets,
                                                  .stream = *stream}));
    TW_RETURN_IF_ERROR(t->Wait());
    *copies = t->copies();
    return Secs(t0, Clock::now());
  };
  // The reference: one copy of the same bytes (device memory at the cache's start): one
  // cudaMemcpyAsync on a GPU, one memcpy on this thread with the CPU backend.
  auto reference = [&](gpu::CopyKind kind) -> StatusOr<double> {
    const auto t0 = Clock::now();
    if (!cuda) {
      if (kind == gpu::CopyKind::kHostToDevice) {
        std::memcpy(cache->device, h, chunk);
      } else {
        std::memcpy(h, cache->device, chunk);
      }
      return Secs(t0, Clock::now());
    }
    if (kind == gpu::CopyKind::kHostToDevice) {
      TW_RETURN_IF_ERROR(backend->CopyAsync(cache->device, h, chunk, kind, *stream));
    } else {
      TW_RETURN_IF_ERROR(backend->CopyAsync(h, cache->device, chunk, kind, *stream));
    }
    TW_RETURN_IF_ERROR(backend->SynchronizeStream(*stream));
    return Secs(t0, Clock::now());
  };

  std::vector<Result> results;
  const std::string ref_name = cuda ? "cudaMemcpyAsync" : "memcpy";
  uint64_t copies = 0;
  for (auto [dir, kind, name] :
       {std::tuple{gpu::KvDirection::kLoad, gpu::CopyKind::kHostToDevice, "load"},
        std::tuple{gpu::KvDirection::kSave, gpu::CopyKind::kDeviceToHost, "save"}}) {
    double best = 1e9, best_ref = 1e9;
    for (int i = 0; i < o.iterations + 1; ++i) {  // the first round warms up
      auto s = transfer(dir, &copies);
      if (!s.ok()) return Fail(s.status());
      auto r = reference(kind);
      if (!r.ok()) return Fail(r.status());
      if (i == 0) continue;
      best = std::min(best, *s);
      best_ref = std::min(best_ref, *r);
    }
    const double gb = static_cast<double>(chunk) / 1e9;
    results.push_back({StrCat(backend->name(), "_", name, "_paged_GBps (vs one ", ref_name, ")"),
                       gb / best, "GB/s", gb / best_ref});
    results.push_back(
        {StrCat(backend->name(), "_", name, "_copies_per_chunk"), double(copies), "copies", {}});
  }
  results.push_back({"chunk_bytes", double(chunk), "B", {}});

  // Per-chunk overhead of the queue: one block of 64 bytes per plane and layer, so the copies
  // cost next to nothing and what remains is planning, queueing, events and completion.
  {
    GpuBenchOptions tiny = o;
    tiny.token_bytes = 64 / o.block_size > 0 ? 64 / o.block_size : 1;
    auto small = MakeCache(*backend, tiny, 4);
    if (!small.ok()) return Fail(small.status());
    auto c2 = gpu::PagedKvCopier::Create(backend, small->layout);
    if (!c2.ok()) return Fail(c2.status());
    const std::vector<int32_t> one = {1};
    const uint64_t s2 = small->layout.SegmentBytes(1);
    std::vector<uint64_t> offs(o.layers);
    for (uint32_t l = 0; l < o.layers; ++l) offs[l] = l * s2;
    const int n = 200 * o.iterations;
    double in_start = 0;
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      const auto a = Clock::now();
      auto t = (*c2)->Start({.direction = gpu::KvDirection::kLoad,
                             .block_table = one,
                             .host_base = h,
                             .host_size = chunk,
                             .layer_offsets = offs,
                             .stream = *stream});
      in_start += Secs(a, Clock::now());
      if (!t.ok()) return Fail(t.status());
      if (Status s = (*t)->Wait(); !s.ok()) return Fail(s);
    }
    const double total = Secs(t0, Clock::now());
    results.push_back({StrCat(backend->name(), "_queue_us_per_chunk (", o.layers, " layers)"),
                       total / n * 1e6,
                       "us",
                       {}});
    results.push_back({StrCat(backend->name(), "_start_us_per_chunk (", o.layers, " layers)"),
                       in_start / n * 1e6,
                       "us",
                       {}});
    backend->FreeDevice(small->device).IgnoreError();
  }
  Print(results, o.json);
  backend->DestroyStream(*stream).IgnoreError();
  backend->FreeHost(h).IgnoreError();
  backend->FreeDevice(cache->device).IgnoreError();
  return 0;
}

}  // namespace tw::bench
