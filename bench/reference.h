// Reference measurements the benchmarks compare against, taken in the same run on the same
// machine and file system: what the hardware gives without the warehouse in the way.
// Shared by every tw-bench subcommand. Each function owns its buffers (and the threads of
// ParallelMemcpyGBps) and returns when they are gone; call from one thread at a time.
#pragma once

#include <cstdint>
#include <string>

#include "tw/common/status.h"

namespace tw::bench {

// Single-thread memcpy of `bytes` into pre-faulted memory, best of `reps`; GB/s.
double MemcpyGBps(uint64_t bytes, int reps);
// `threads` threads at once, each copying `bytes` between pre-faulted buffers of its own: all
// the bytes copied over the time from the start until the last thread is done, best of
// `reps`; GB/s. The reference of work spread over as many threads (twd's workers).
double ParallelMemcpyGBps(uint64_t bytes, int threads, int reps);

// Shape of the raw O_DIRECT I/O: requests of `io_size`, `batch` bytes per batch with all of
// a batch's requests in flight at once (up to `queue_depth`), on a file at `path` of
// `file_bytes` (created, reused and removed by the caller).
struct DirectIoShape {
  std::string path;
  uint64_t file_bytes = 0;
  uint64_t io_size = 4 << 20;
  uint64_t batch = 32 << 20;
  uint32_t queue_depth = 32;
};

// Writes the whole file in batches, with one fdatasync after every batch (the cadence of
// durable puts of `batch`-byte chunks); GB/s.
StatusOr<double> DirectWriteSyncGBps(const DirectIoShape& shape);
// Reads the whole file sequentially in batches; GB/s. REQUIRES: the file was written.
StatusOr<double> DirectReadGBps(const DirectIoShape& shape);

}  // namespace tw::bench
