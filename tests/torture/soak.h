// The soak mode of tw-torture (bench/soak.sh drives it): many clients run the mixed workload
// against one twd for a long time with a working set larger than both tiers, and twd's RSS,
// fds and threads and the clients' lookup and get latencies are sampled at a fixed interval,
// one JSON line per sample. Faults are not injected; every byte read is still verified.
//
// Threading: one thread. Lifetime: RunSoak() owns the twd and client processes it starts.
#pragma once

#include <cstdint>
#include <string>

namespace tw::torture {

struct SoakOptions {
  std::string self, twd, dir;
  double minutes = 30;
  double sample_seconds = 60;
  uint32_t clients = 64;
  uint64_t dram_mib = 256;
  uint64_t nvme_mib = 1024;
  uint64_t seed = 1;
  std::string out;  // JSON lines; "" = stdout only
};

// Returns the exit code: 0 when no client read a wrong byte and twd's fds, threads and
// leases came back once the clients left.
int RunSoak(const SoakOptions& o);

}  // namespace tw::torture
