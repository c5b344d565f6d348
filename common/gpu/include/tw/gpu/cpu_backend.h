// CpuBackend: the Backend (backend.h) on the CPU, for tests and for machines without a GPU.
//
// "Device memory" is host memory from AllocateDevice; the backend remembers every device
// allocation and checks, when a copy runs, that its device side lies inside one (an error found
// then is sticky for the stream, as a CUDA fault is). A stream is an in-order queue run by its
// own worker thread; an event completes when the stream's worker reaches it, so ordering and
// completion follow CUDA streams (see backend.h). Pinned memory is ordinary memory; registration
// only records the range, so double and overlapping registrations fail as they do in CUDA.
// IPC handles open only in the process that made them (in-process mappings of the same memory);
// ReadFile is pread(2) into the device memory.
//
// Threading: every method is thread-safe. `mu_` guards the handle and memory tables; each
// stream's queue has its own lock (in cpu_backend.cc). Lifetime: the destructor waits for the
// work queued on every stream, destroyed ones included, then joins their threads.
#ifndef TW_GPU_CPU_BACKEND_H_
#define TW_GPU_CPU_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "tw/gpu/backend.h"

namespace tw::gpu {

class CpuBackend final : public Backend {
 public:
  // Test hook: RegisterHost fails for any range longer than this (CUDA fails very large ones).
  struct Options {
    std::size_t max_register_bytes = SIZE_MAX;  // the largest range one RegisterHost accepts
  };
  CpuBackend() : CpuBackend(Options{}) {}
  explicit CpuBackend(Options options);
  ~CpuBackend() override;
  CpuBackend(const CpuBackend&) = delete;
  CpuBackend& operator=(const CpuBackend&) = delete;

  std::string_view name() const override { return "cpu"; }
  StatusOr<void*> AllocateHost(std::size_t bytes) override;
  Status FreeHost(void* ptr) override;
  Status RegisterHost(void* ptr, std::size_t bytes) override;
  Status UnregisterHost(void* ptr) override;
  StatusOr<void*> AllocateDevice(std::size_t bytes) override;
  Status FreeDevice(void* ptr) override;
  StatusOr<Stream> CreateStream() override;
  Status DestroyStream(Stream stream) override;
  Status CopyAsync(void* dst, const void* src, std::size_t bytes, CopyKind kind,
                   Stream stream) override;
  Status Copy2DAsync(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                     std::size_t width, std::size_t height, CopyKind kind, Stream stream) override;
  Status StreamWaitEvent(Stream stream, Event event) override;
  Status LaunchHostFunc(Stream stream, std::function<void()> fn) override;
  Status SynchronizeStream(Stream stream) override;
  StatusOr<Event> CreateEvent() override;
  Status DestroyEvent(Event event) override;
  Status RecordEvent(Event event, Stream stream) override;
  StatusOr<bool> QueryEvent(Event event) override;
  Status SynchronizeEvent(Event event) override;
  StatusOr<IpcMemHandle> GetIpcHandle(void* device_ptr) override;
  StatusOr<void*> OpenIpcHandle(const IpcMemHandle& handle) override;
  Status CloseIpcHandle(void* mapped_base) override;
  StatusOr<std::size_t> ReadFile(int fd, void* device_ptr, std::size_t bytes,
                                 std::int64_t file_offset) override;

  // Number of host ranges registered now (for tests of RegisterHostInSlices).
  std::size_t registered_ranges() const;
  // Copy calls queued so far (CopyAsync and Copy2DAsync each count one), for tests that check
  // how many copies a transfer issued.
  std::uint64_t copies_queued() const;

 private:
  struct StreamState;
  struct EventState;

  StatusOr<std::shared_ptr<StreamState>> FindStream(Stream stream) const;
  StatusOr<std::shared_ptr<EventState>> FindEvent(Event event) const;
  // OK when [ptr, ptr + bytes) lies inside one live device allocation.
  Status CheckDeviceRange(const void* ptr, std::size_t bytes) const;

  const Options options_;
  mutable std::mutex mu_;
  std::uintptr_t next_handle_ = 1;                                  // guarded by mu_
  std::uint64_t copies_queued_ = 0;                                 // guarded by mu_
  std::map<std::uintptr_t, std::shared_ptr<StreamState>> streams_;  // guarded by mu_
  std::vector<std::shared_ptr<StreamState>> retired_streams_;       // guarded by mu_
  std::map<std::uintptr_t, std::shared_ptr<EventState>> events_;    // guarded by mu_
  std::map<std::uintptr_t, std::size_t> device_allocs_;  // base → bytes; guarded by mu_
  std::map<std::uintptr_t, std::size_t> host_allocs_;    // base → bytes; guarded by mu_
  std::map<std::uintptr_t, std::size_t> registered_;     // base → bytes; guarded by mu_
  std::map<std::uintptr_t, int> ipc_opens_;              // base → open count; guarded by mu_
};

}  // namespace tw::gpu

#endif  // TW_GPU_CPU_BACKEND_H_
