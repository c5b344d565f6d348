// tw::store::Device — every byte the storage engine moves to or from persistent media goes
// through this interface: a real implementation (O_DIRECT file or block device through
// io_uring) here; an in-memory one and a fault-injecting wrapper for crash and corruption
// tests in the tw_store_testing library (tw/store/testing/), which production binaries never
// link.
//
// I/O rules: offsets, lengths and buffer addresses of data I/O are multiples of kIoAlign
// (4 KiB), so the real device can use O_DIRECT. Submit() takes a batch of independent
// requests and returns when all have completed; the real device keeps up to `queue_depth`
// of them in flight. Sync() makes every completed write durable (fdatasync).
//
// Threading: Submit() and Sync() may be called from any number of threads at once. The
// counters are atomic. Public Submit()/Sync() are non-virtual: they count bytes and calls,
// then call the protected SubmitImpl()/SyncImpl() (the CacheLib navy Device pattern), so the
// byte counters are exact for every implementation.
//
// Lifetime: a Device is opened by a DeviceFactory and holds the path's exclusive lock
// (flock for real files) until destroyed.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tw/common/status.h"
#include "tw/store/options.h"

namespace tw::store {

inline constexpr uint64_t kIoAlign = 4096;
inline constexpr uint64_t kSectorSize = 512;

// One request of a batch.
struct IoRequest {
  bool write = false;   // true: write buf → device; false: read device → buf
  uint64_t offset = 0;  // device byte offset (kIoAlign multiple)
  uint64_t length = 0;  // bytes (kIoAlign multiple)
  void* buf = nullptr;  // kIoAlign-aligned memory
};

class Device {
 public:
  virtual ~Device() = default;

  // Usable bytes.
  uint64_t size() const { return size_; }
  const std::string& name() const { return name_; }

  // Runs every request; returns the first error (all requests have finished either way).
  Status Submit(std::span<const IoRequest> requests);
  Status Read(uint64_t offset, void* buf, uint64_t length);
  Status Write(uint64_t offset, const void* buf, uint64_t length);
  // Makes completed writes durable.
  Status Sync();

  // Declares [base, base + length) as memory that I/O buffers often lie in (the DRAM tier's
  // pinned arena). A device that can exploit it does: the io_uring device registers it as
  // fixed buffers, so I/O on it skips pinning pages per request. Others ignore it. Returns
  // whether it is used. May be called once, before or during I/O; the memory must stay
  // mapped for the device's life. Registering pins the pages (RLIMIT_MEMLOCK unless
  // CAP_IPC_LOCK); when that is refused the device logs it once and carries on without.
  bool RegisterMemory(void* base, uint64_t length) { return RegisterMemoryImpl(base, length); }
  // Requests that ran on registered memory (tests and stats).
  uint64_t registered_ios() const { return registered_ios_.load(std::memory_order_relaxed); }

  uint64_t bytes_read() const { return bytes_read_.load(std::memory_order_relaxed); }
  uint64_t bytes_written() const { return bytes_written_.load(std::memory_order_relaxed); }
  uint64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }
  // How the bytes move: "io_uring", "psync" (pread/pwrite threads), or what a test device says.
  virtual std::string_view engine() const { return "other"; }

 protected:
  Device(std::string name, uint64_t size) : name_(std::move(name)), size_(size) {}
  virtual Status SubmitImpl(std::span<const IoRequest> requests) = 0;
  virtual Status SyncImpl() = 0;
  virtual bool RegisterMemoryImpl(void* /*base*/, uint64_t /*length*/) { return false; }
  void CountRegisteredIos(uint64_t n) { registered_ios_.fetch_add(n, std::memory_order_relaxed); }

 private:
  std::string name_;
  uint64_t size_;
  std::atomic<uint64_t> bytes_read_{0};
  std::atomic<uint64_t> bytes_written_{0};
  std::atomic<uint64_t> syncs_{0};
  std::atomic<uint64_t> registered_ios_{0};
};

// Opens the device behind one configured data path.
class DeviceFactory {
 public:
  virtual ~DeviceFactory() = default;
  // Opens (creating a file of path.capacity bytes when it does not exist) and locks the
  // path. FailedPrecondition when another opener holds it.
  virtual StatusOr<std::unique_ptr<Device>> Open(const DevicePath& path, uint32_t queue_depth) = 0;
};

// Real files and block devices: O_DIRECT, io_uring, flock(LOCK_EX|LOCK_NB). A missing file is
// created and preallocated (fallocate, reads as zeros) to its configured capacity. Where
// io_uring_setup is refused (ENOSYS, EPERM: an old kernel, kernel.io_uring_disabled, or the
// default seccomp profile of Docker, podman and containerd), it logs a warning and opens the
// pread/pwrite device below instead.
std::shared_ptr<DeviceFactory> MakeUringDeviceFactory();
// The same files through pread/pwrite on a pool of threads (queue_depth / 4 of them, 2 to 16).
std::shared_ptr<DeviceFactory> MakePsyncDeviceFactory();

}  // namespace tw::store
