#include "tw/gpu/cuda_backend.h"

#include <cstring>
#include <utility>

#include "fmt/format.h"

namespace tw::gpu {
namespace {

// cudaError_t and flag values used here (the ABI check pins the ones it can).
constexpr int kCudaErrorInvalidValue = 1;
constexpr int kCudaErrorMemoryAllocation = 2;
constexpr int kCudaErrorNotReady = 600;
constexpr unsigned kCudaStreamNonBlocking = 0x01;
constexpr unsigned kCudaEventDisableTiming = 0x02;
constexpr unsigned kCudaHostRegisterDefault = 0x00;
constexpr unsigned kCudaIpcMemLazyEnablePeerAccess = 0x01;

void* AsPtr(Stream s) { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(s)); }
void* AsPtr(Event e) { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(e)); }

int MemcpyKind(CopyKind kind) {
  switch (kind) {
    case CopyKind::kHostToDevice:
      return 1;  // cudaMemcpyHostToDevice
    case CopyKind::kDeviceToHost:
      return 2;  // cudaMemcpyDeviceToHost
    case CopyKind::kDeviceToDevice:
      return 3;  // cudaMemcpyDeviceToDevice
  }
  return 4;  // cudaMemcpyDefault
}

void RunHostFunc(void* user_data) {
  std::unique_ptr<std::function<void()>> fn(static_cast<std::function<void()>*>(user_data));
  (*fn)();
}

}  // namespace

StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const CudaLibraries& libs, int device) {
  if (libs.runtime() == nullptr) {
    return FailedPreconditionError("the GPU path is off: " +
                                   std::string(libs.availability().cuda.message()));
  }
  if (device < 0 || device >= libs.availability().device_count) {
    return InvalidArgumentError(
        fmt::format("no CUDA device {} ({} visible)", device, libs.availability().device_count));
  }
  std::unique_ptr<CudaBackend> backend(new CudaBackend(libs.runtime(), device));
  TW_RETURN_IF_ERROR(backend->Bind());
  return backend;
}

Status CudaBackend::Check(int rc, const char* call) const {
  if (rc == kCudaSuccess) return OkStatus();
  const char* name = api_->GetErrorName(rc);
  const char* text = api_->GetErrorString(rc);
  std::string message =
      fmt::format("{}: error {} ({}: {})", call, rc, name ? name : "?", text ? text : "?");
  switch (rc) {
    case kCudaErrorInvalidValue:
      return InvalidArgumentError(std::move(message));
    case kCudaErrorMemoryAllocation:
      return ResourceExhaustedError(std::move(message));
    default:
      return InternalError(std::move(message));
  }
}

Status CudaBackend::Bind() const { return Check(api_->SetDevice(device_), "cudaSetDevice"); }

StatusOr<void*> CudaBackend::AllocateHost(std::size_t bytes) {
  if (bytes == 0) return InvalidArgumentError("AllocateHost: zero bytes");
  TW_RETURN_IF_ERROR(Bind());
  void* p = nullptr;
  TW_RETURN_IF_ERROR(Check(api_->MallocHost(&p, bytes), "cudaMallocHost"));
  return p;
}

Status CudaBackend::FreeHost(void* ptr) { return Check(api_->FreeHost(ptr), "cudaFreeHost"); }

Status CudaBackend::RegisterHost(void* ptr, std::size_t bytes) {
  TW_RETURN_IF_ERROR(Bind());
  return Check(api_->HostRegister(ptr, bytes, kCudaHostRegisterDefault), "cudaHostRegister");
}

Status CudaBackend::UnregisterHost(void* ptr) {
  return Check(api_->HostUnregister(ptr), "cudaHostUnregister");
}

StatusOr<void*> CudaBackend::AllocateDevice(std::size_t bytes) {
  if (bytes == 0) return InvalidArgumentError("AllocateDevice: zero bytes");
  TW_RETURN_IF_ERROR(Bind());
  void* p = nullptr;
  TW_RETURN_IF_ERROR(Check(api_->Malloc(&p, bytes), "cudaMalloc"));
  return p;
}

Status CudaBackend::FreeDevice(void* ptr) { return Check(api_->Free(ptr), "cudaFree"); }

StatusOr<Stream> CudaBackend::CreateStream() {
  TW_RETURN_IF_ERROR(Bind());
  void* s = nullptr;
  TW_RETURN_IF_ERROR(
      Check(api_->StreamCreateWithFlags(&s, kCudaStreamNonBlocking), "cudaStreamCreateWithFlags"));
  return Stream{reinterpret_cast<std::uintptr_t>(s)};
}

Status CudaBackend::DestroyStream(Stream stream) {
  return Check(api_->StreamDestroy(AsPtr(stream)), "cudaStreamDestroy");
}

Status CudaBackend::CopyAsync(void* dst, const void* src, std::size_t bytes, CopyKind kind,
                              Stream stream) {
  if (bytes == 0) return OkStatus();
  TW_RETURN_IF_ERROR(Bind());
  return Check(api_->MemcpyAsync(dst, src, bytes, MemcpyKind(kind), AsPtr(stream)),
               "cudaMemcpyAsync");
}

Status CudaBackend::Copy2DAsync(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                                std::size_t width, std::size_t height, CopyKind kind,
                                Stream stream) {
  if (width == 0 || height == 0) return OkStatus();
  TW_RETURN_IF_ERROR(Bind());
  return Check(
      api_->Memcpy2DAsync(dst, dpitch, src, spitch, width, height, MemcpyKind(kind), AsPtr(stream)),
      "cudaMemcpy2DAsync");
}

Status CudaBackend::StreamWaitEvent(Stream stream, Event event) {
  return Check(api_->StreamWaitEvent(AsPtr(stream), AsPtr(event), 0), "cudaStreamWaitEvent");
}

Status CudaBackend::LaunchHostFunc(Stream stream, std::function<void()> fn) {
  if (!fn) return InvalidArgumentError("LaunchHostFunc: empty function");
  TW_RETURN_IF_ERROR(Bind());
  auto owned = std::make_unique<std::function<void()>>(std::move(fn));
  TW_RETURN_IF_ERROR(
      Check(api_->LaunchHostFunc(AsPtr(stream), &RunHostFunc, owned.get()), "cudaLaunchHostFunc"));
  owned.release();  // RunHostFunc deletes it
  return OkStatus();
}

Status CudaBackend::SynchronizeStream(Stream stream) {
  return Check(api_->StreamSynchronize(AsPtr(stream)), "cudaStreamSynchronize");
}

StatusOr<Event> CudaBackend::CreateEvent() {
  TW_RETURN_IF_ERROR(Bind());
  void* e = nullptr;
  TW_RETURN_IF_ERROR(
      Check(api_->EventCreateWithFlags(&e, kCudaEventDisableTiming), "cudaEventCreateWithFlags"));
  return Event{reinterpret_cast<std::uintptr_t>(e)};
}

Status CudaBackend::DestroyEvent(Event event) {
  return Check(api_->EventDestroy(AsPtr(event)), "cudaEventDestroy");
}

Status CudaBackend::RecordEvent(Event event, Stream stream) {
  return Check(api_->EventRecord(AsPtr(event), AsPtr(stream)), "cudaEventRecord");
}

StatusOr<bool> CudaBackend::QueryEvent(Event event) {
  const int rc = api_->EventQuery(AsPtr(event));
  if (rc == kCudaErrorNotReady) return false;
  TW_RETURN_IF_ERROR(Check(rc, "cudaEventQuery"));
  return true;
}

Status CudaBackend::SynchronizeEvent(Event event) {
  return Check(api_->EventSynchronize(AsPtr(event)), "cudaEventSynchronize");
}

StatusOr<IpcMemHandle> CudaBackend::GetIpcHandle(void* device_ptr) {
  TW_RETURN_IF_ERROR(Bind());
  CudaRuntimeApi::IpcHandleAbi abi{};
  TW_RETURN_IF_ERROR(Check(api_->IpcGetMemHandle(&abi, device_ptr), "cudaIpcGetMemHandle"));
  IpcMemHandle handle;
  std::memcpy(handle.bytes.data(), abi.reserved, sizeof(abi.reserved));
  return handle;
}

StatusOr<void*> CudaBackend::OpenIpcHandle(const IpcMemHandle& handle) {
  TW_RETURN_IF_ERROR(Bind());
  CudaRuntimeApi::IpcHandleAbi abi{};
  std::memcpy(abi.reserved, handle.bytes.data(), sizeof(abi.reserved));
  void* p = nullptr;
  TW_RETURN_IF_ERROR(Check(api_->IpcOpenMemHandle(&p, abi, kCudaIpcMemLazyEnablePeerAccess),
                           "cudaIpcOpenMemHandle"));
  return p;
}

Status CudaBackend::CloseIpcHandle(void* mapped_base) {
  return Check(api_->IpcCloseMemHandle(mapped_base), "cudaIpcCloseMemHandle");
}

StatusOr<std::size_t> CudaBackend::ReadFile(int, void*, std::size_t, std::int64_t) {
  return UnimplementedError("ReadFile: cuFile reads are not built yet in the CUDA backend");
}

}  // namespace tw::gpu
