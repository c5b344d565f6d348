#include "reference.h"

#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "tw/store/device.h"

namespace tw::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Mapping {
  explicit Mapping(uint64_t n) : size(n) {
    void* p =
        mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    data = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
    if (data) std::memset(data, 1, n);
  }
  ~Mapping() {
    if (data) munmap(data, size);
  }
  uint64_t size;
  uint8_t* data;
};

// Runs the batches; returns the seconds they took (not counting open and allocation).
StatusOr<double> RunBatches(const DirectIoShape& s, bool write) {
  auto f = store::MakeUringDeviceFactory();
  TW_ASSIGN_OR_RETURN(auto dev, f->Open({s.path, s.file_bytes}, s.queue_depth));
  Mapping buf(s.batch);
  if (!buf.data) return ResourceExhaustedError("out of memory");
  auto start = Clock::now();
  for (uint64_t off = 0; off + s.batch <= s.file_bytes; off += s.batch) {
    std::vector<store::IoRequest> reqs;
    for (uint64_t i = 0; i < s.batch; i += s.io_size) {
      reqs.push_back({write, off + i, std::min(s.io_size, s.batch - i), buf.data + i});
    }
    TW_RETURN_IF_ERROR(dev->Submit(reqs));
    if (write) TW_RETURN_IF_ERROR(dev->Sync());
  }
  return Seconds(start, Clock::now());
}

}  // namespace

double MemcpyGBps(uint64_t bytes, int reps) {
  Mapping src(bytes), dst(bytes);
  if (!src.data || !dst.data) return 0;
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    auto a = Clock::now();
    std::memcpy(dst.data, src.data, bytes);
    auto b = Clock::now();
    best = std::max(best, double(bytes) / Seconds(a, b) / 1e9);
  }
  return best;
}

double ParallelMemcpyGBps(uint64_t bytes, int threads, int reps) {
  std::vector<std::unique_ptr<Mapping>> src, dst;
  for (int t = 0; t < threads; ++t) {
    src.push_back(std::make_unique<Mapping>(bytes));
    dst.push_back(std::make_unique<Mapping>(bytes));
    if (!src.back()->data || !dst.back()->data) return 0;
  }
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    // Threads are started and parked before the clock starts; they all copy at `go`.
    std::atomic<int> parked{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        parked.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        std::memcpy(dst[t]->data, src[t]->data, bytes);
      });
    }
    while (parked.load() < threads) std::this_thread::yield();
    auto a = Clock::now();
    go.store(true, std::memory_order_release);
    for (auto& w : workers) w.join();
    auto b = Clock::now();
    best = std::max(best, double(bytes) * threads / Seconds(a, b) / 1e9);
  }
  return best;
}

StatusOr<double> DirectWriteSyncGBps(const DirectIoShape& s) {
  TW_ASSIGN_OR_RETURN(double secs, RunBatches(s, true));
  return double(s.file_bytes / s.batch * s.batch) / secs / 1e9;
}

StatusOr<double> DirectReadGBps(const DirectIoShape& s) {
  TW_ASSIGN_OR_RETURN(double secs, RunBatches(s, false));
  return double(s.file_bytes / s.batch * s.batch) / secs / 1e9;
}

}  // namespace tw::bench
