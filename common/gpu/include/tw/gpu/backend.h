// Backend: the few GPU operations the warehouse's transfer queues need, behind one interface.
//
// What: pinned host memory (allocate, or register an existing range such as the arena), device
// memory, streams, asynchronous copies on a stream (host→device, device→host,
// device→device), events, host callbacks in stream order, legacy CUDA IPC handles and a
// cuFile-style read from a file into device memory. Two implementations: CpuBackend
// (cpu_backend.h: "device memory" is host memory, used by the tests on machines without a GPU)
// and CudaBackend (cuda_backend.h) over the runtime loaded at run time (cuda_loader.h).
//
// Ordering and completion (the same as CUDA streams, so queue logic tested on the CPU backend
// holds on a GPU): work enqueued on one stream runs in enqueue order, each item after the
// previous one completed; work on different streams is unordered. CopyAsync, RecordEvent and
// LaunchHostFunc return once the work is queued; the bytes are in place when a later event on
// the same stream completes, or after SynchronizeStream. An event is complete when everything
// enqueued on its stream before its last RecordEvent has completed; an event never recorded is
// complete. Re-recording an event makes it wait for the newer point.
//
// Errors: invalid arguments found at enqueue time are returned by the enqueueing call. An error
// found while the work runs (a bad device range) is sticky for the stream: later work on that
// stream is skipped, and SynchronizeStream, QueryEvent and SynchronizeEvent on events recorded
// after it return the error (CUDA makes such errors sticky for the whole context; callers must
// treat any error as fatal for the stream and rebuild it).
//
// Threading: every method may be called from any thread. Host functions run on a backend
// thread and must not call back into the backend's synchronising calls (CUDA forbids any CUDA
// call there).
//
// Lifetime: handles (Stream, Event) are owned by the backend that made them and must be
// destroyed before it. DestroyStream returns at once; work already queued still runs (as in
// CUDA). Destroying the backend waits for all queued work. Memory passed to CopyAsync must stay
// valid until the copy has completed.
#ifndef TW_GPU_BACKEND_H_
#define TW_GPU_BACKEND_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

#include "tw/common/status.h"

namespace tw::gpu {

// Opaque handles; 0 is never a valid handle. A CUDA backend stores cudaStream_t/cudaEvent_t.
enum class Stream : std::uintptr_t {};
enum class Event : std::uintptr_t {};

// Direction of a copy.
enum class CopyKind {
  kHostToDevice,    // host (pinned or pageable) memory to device memory
  kDeviceToHost,    // device memory to host memory
  kDeviceToDevice,  // device memory to device memory (same device)
};
std::string_view ToString(CopyKind kind);

// A legacy CUDA IPC memory handle: covers a whole device allocation and opens at its base
// (callers send the offset from the base beside it). 64 bytes, as cudaIpcMemHandle_t.
struct IpcMemHandle {
  std::array<std::uint8_t, 64> bytes{};
};

class Backend {
 public:
  virtual ~Backend() = default;

  // "cpu" or "cuda".
  virtual std::string_view name() const = 0;

  // Page-locked host memory (cudaMallocHost). REQUIRES: bytes > 0.
  virtual StatusOr<void*> AllocateHost(std::size_t bytes) = 0;
  virtual Status FreeHost(void* ptr) = 0;
  // Pins an existing host range in one call (cudaHostRegister). Very large ranges fail in one
  // call: use RegisterHostInSlices. REQUIRES: the range does not overlap a registered range.
  virtual Status RegisterHost(void* ptr, std::size_t bytes) = 0;
  // REQUIRES: ptr is the start of a range given to RegisterHost.
  virtual Status UnregisterHost(void* ptr) = 0;

  // Device memory (cudaMalloc). REQUIRES: bytes > 0.
  virtual StatusOr<void*> AllocateDevice(std::size_t bytes) = 0;
  virtual Status FreeDevice(void* ptr) = 0;

  virtual StatusOr<Stream> CreateStream() = 0;
  virtual Status DestroyStream(Stream stream) = 0;
  // Queues a copy of `bytes` bytes; the device side(s) must lie in device memory.
  virtual Status CopyAsync(void* dst, const void* src, std::size_t bytes, CopyKind kind,
                           Stream stream) = 0;
  // Queues a 2-D copy (cudaMemcpy2DAsync): `height` rows of `width` bytes, row i from
  // src + i × spitch to dst + i × dpitch. Paged KV blocks of one plane are rows of equal width
  // at a fixed stride, so a run of blocks is one call. REQUIRES: width <= dpitch, width <= spitch.
  virtual Status Copy2DAsync(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                             std::size_t width, std::size_t height, CopyKind kind,
                             Stream stream) = 0;
  // Makes work queued on `stream` after this call wait until `event` has completed (its latest
  // record at the time of this call), as cudaStreamWaitEvent.
  virtual Status StreamWaitEvent(Stream stream, Event event) = 0;
  // Queues `fn` to run on a backend thread in stream order (cudaLaunchHostFunc).
  virtual Status LaunchHostFunc(Stream stream, std::function<void()> fn) = 0;
  // Waits until everything queued on `stream` has completed; returns its sticky error if any.
  virtual Status SynchronizeStream(Stream stream) = 0;

  virtual StatusOr<Event> CreateEvent() = 0;
  virtual Status DestroyEvent(Event event) = 0;
  virtual Status RecordEvent(Event event, Stream stream) = 0;
  // true when complete, false when pending, an error when the work before it failed.
  virtual StatusOr<bool> QueryEvent(Event event) = 0;
  virtual Status SynchronizeEvent(Event event) = 0;

  // Legacy IPC: the handle of the allocation that starts at `device_ptr`.
  virtual StatusOr<IpcMemHandle> GetIpcHandle(void* device_ptr) = 0;
  // Maps an allocation exported by GetIpcHandle (possibly in another process); returns its base.
  virtual StatusOr<void*> OpenIpcHandle(const IpcMemHandle& handle) = 0;
  virtual Status CloseIpcHandle(void* mapped_base) = 0;

  // Reads `bytes` from `fd` at `file_offset` into device memory (cuFileRead; synchronous).
  // Returns the number of bytes read (short at end of file).
  virtual StatusOr<std::size_t> ReadFile(int fd, void* device_ptr, std::size_t bytes,
                                         std::int64_t file_offset) = 0;
};

// The largest range given to one RegisterHost call by RegisterHostInSlices: one call of 512 GiB
// or more fails in CUDA and leaves a stale runtime error behind.
inline constexpr std::size_t kDefaultRegisterSlice = std::size_t{64} << 30;

// Registers [ptr, ptr + bytes) as slices of at most `slice_bytes`. On failure the slices already
// registered are unregistered again, and the error names the failing slice.
// REQUIRES: slice_bytes > 0.
Status RegisterHostInSlices(Backend& backend, void* ptr, std::size_t bytes,
                            std::size_t slice_bytes = kDefaultRegisterSlice);
// Undoes RegisterHostInSlices with the same arguments; returns the first error, after trying
// every slice.
Status UnregisterHostInSlices(Backend& backend, void* ptr, std::size_t bytes,
                              std::size_t slice_bytes = kDefaultRegisterSlice);

}  // namespace tw::gpu

#endif  // TW_GPU_BACKEND_H_
