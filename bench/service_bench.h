// `tw-bench service` (bench/service_bench.cc): twd measured as a service against its
// references in the same run. Called from tw-bench's main; single-threaded caller.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace tw::bench {

struct ServiceBenchOptions {
  std::string twd_path;  // the twd binary (default: next to tw-bench)
  std::string redis_path = "/usr/bin/redis-server";
  std::string data_dir;                       // twd's data and the raw O_DIRECT file ("" = temp)
  uint64_t chunk_bytes = uint64_t{32} << 20;  // value size (a 256-token Llama-3.1-8B chunk)
  int chunks = 16;                            // chunks per working set
  int passes = 3;                             // get passes over the working set
  int depth = 4;                              // requests in flight per client
  int lookups = 2000;                         // lookups of the 512-chunk chain
  int pings = 20000;                          // reference ping-pongs
  bool json = false;                          // one JSON object per line
};

// Runs every measurement and prints it; returns a process exit code.
int RunServiceBench(const ServiceBenchOptions& options);

// Adds the `service` subcommand to tw-bench's command line; its callback sets *exit_code.
void AddServiceCommand(CLI::App& app, int* exit_code);

}  // namespace tw::bench
