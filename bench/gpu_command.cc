// `tw-bench gpu`'s command line (the benchmark itself: gpu_bench.cc).
#include <memory>

#include "command.h"
#include "gpu_bench.h"

namespace tw::bench {

Command AddGpuCommand(CLI::App& parent) {
  auto o = std::make_shared<GpuBenchOptions>();
  CLI::App* app = parent.add_subcommand(
      "gpu",
      "paged KV transfers (chunk <-> paged blocks) against one plain copy of the same bytes "
      "(cudaMemcpyAsync from pinned memory on a GPU, memcpy on the CPU backend), and the "
      "queue's per-chunk overhead");
  app->add_option("--backend", o->backend, "auto (CUDA when a GPU is visible), cpu or cuda")
      ->capture_default_str();
  app->add_option("--device", o->device, "CUDA device")->capture_default_str();
  app->add_option("--layout", o->layout, "flash_attn, flashinfer or mla")->capture_default_str();
  app->add_option("--layers", o->layers, "layers")->capture_default_str();
  app->add_option("--chunk-tokens", o->chunk_tokens, "tokens per chunk")->capture_default_str();
  app->add_option("--block-size", o->block_size, "tokens per block")->capture_default_str();
  app->add_option("--token-bytes", o->token_bytes, "bytes per token per plane")
      ->capture_default_str();
  app->add_option("--run-blocks", o->run_blocks, "consecutive blocks per run of the table")
      ->capture_default_str();
  app->add_option("--iterations", o->iterations, "timed rounds (best is reported)")
      ->capture_default_str();
  app->add_flag("--json", o->json, "one JSON object per figure");
  return Command{app, [o] { return RunGpuBench(*o); }};
}

}  // namespace tw::bench
