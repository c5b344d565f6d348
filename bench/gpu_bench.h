// `tw-bench gpu` (and tw-gpu-check's benchmark): the paged KV copy engine against plain copies
// of the same bytes; see gpu_bench.cc. No command-line library here, so the GPU check program
// (tests/gpu/gpu_check.cc) links it without CLI11.
#pragma once

#include <cstdint>
#include <string>

namespace tw::bench {

struct GpuBenchOptions {
  std::string backend = "auto";  // auto | cpu | cuda
  int device = 0;
  std::string layout = "flash_attn";  // flash_attn | flashinfer | mla
  uint32_t layers = 32;
  uint32_t chunk_tokens = 256;
  uint32_t block_size = 16;
  uint64_t token_bytes = 2048;  // bytes per token per plane (8 KV heads × 128 × bf16)
  uint32_t run_blocks = 4;      // the block table is runs of this many consecutive blocks
  int iterations = 20;
  bool json = false;
};

// Runs the benchmark and prints its figures (stdout); returns the exit code (0, or 2 on error).
int RunGpuBench(const GpuBenchOptions& options);

}  // namespace tw::bench
