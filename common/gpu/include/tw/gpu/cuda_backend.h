// CudaBackend: the Backend (backend.h) over the CUDA runtime loaded by CudaLibraries
// (cuda_loader.h). Each call maps onto one runtime call (cudaMemcpyAsync, cudaEventRecord, ...);
// ordering and completion are CUDA's own. A cudaError_t becomes a Status whose message names
// the call and the error (cudaErrorInvalidValue → INVALID_ARGUMENT, cudaErrorMemoryAllocation →
// RESOURCE_EXHAUSTED, others INTERNAL).
//
// ReadFile (cuFile) is not built yet: it returns UNIMPLEMENTED.
//
// Threading: every method may be called from any thread; each call first makes the backend's
// device current on the calling thread (the runtime's current device is per thread).
// Lifetime: the CudaLibraries it was made from must outlive it (their functions are never
// unloaded, so in practice: keep the CudaLibraries object).
#ifndef TW_GPU_CUDA_BACKEND_H_
#define TW_GPU_CUDA_BACKEND_H_

#include <memory>

#include "tw/gpu/backend.h"
#include "tw/gpu/cuda_loader.h"

namespace tw::gpu {

class CudaBackend final : public Backend {
 public:
  // FAILED_PRECONDITION with the loader's reason when the GPU path is off; else binds `device`.
  static StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaLibraries& libs, int device = 0);

  std::string_view name() const override { return "cuda"; }
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

 private:
  CudaBackend(const CudaRuntimeApi* api, int device) : api_(api), device_(device) {}
  // OK, or the error of `rc` from `call`.
  Status Check(int rc, const char* call) const;
  // Makes device_ current on this thread.
  Status Bind() const;

  const CudaRuntimeApi* const api_;
  const int device_;
};

}  // namespace tw::gpu

#endif  // TW_GPU_CUDA_BACKEND_H_
