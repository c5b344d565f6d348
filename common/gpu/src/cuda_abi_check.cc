// Compile-time check, against the real CUDA runtime and cuFile headers, that the declarations in
// cuda_loader.h (written without those headers, so nothing links or requires CUDA) match them:
// error values, the IPC handle's size, and each resolved function's parameter shapes. Built
// whenever the headers are found (the toolkit, or the wheels scripts/bootstrap.sh installs).
#include <cuda_runtime_api.h>
#include <cufile.h>

#include <cstddef>
#include <type_traits>

#include "tw/gpu/cuda_loader.h"

namespace tw::gpu {
namespace {

// Two parameter or return types have the same calling-convention shape: same size, and both
// pointers or both not.
template <typename A, typename B>
constexpr bool SameShape() {
  if constexpr (std::is_void_v<A> || std::is_void_v<B>) {
    return std::is_void_v<A> == std::is_void_v<B>;
  } else {
    return sizeof(A) == sizeof(B) && std::is_pointer_v<A> == std::is_pointer_v<B> &&
           std::is_class_v<A> == std::is_class_v<B>;
  }
}

template <typename R1, typename... A1, typename R2, typename... A2>
constexpr bool SameAbi(R1 (*)(A1...), R2 (*)(A2...)) {
  if constexpr (sizeof...(A1) != sizeof...(A2)) {
    return false;
  } else {
    return SameShape<R1, R2>() && (SameShape<A1, A2>() && ...);
  }
}

static_assert(sizeof(cudaError_t) == sizeof(int));
static_assert(cudaSuccess == kCudaSuccess);
static_assert(cudaErrorInsufficientDriver == kCudaErrorInsufficientDriver);
static_assert(cudaErrorNoDevice == kCudaErrorNoDevice);
static_assert(sizeof(cudaIpcMemHandle_t) == sizeof(CudaRuntimeApi::IpcHandleAbi));
static_assert(sizeof(cudaIpcMemHandle_t) == 64);
static_assert(cudaMemcpyHostToDevice == 1 && cudaMemcpyDeviceToHost == 2 &&
              cudaMemcpyDeviceToDevice == 3);

#define TW_CHECK_ABI(field, function)                                            \
  static_assert(SameAbi(decltype(CudaRuntimeApi::field){}, &function), #function \
                " differs "                                                      \
                "from cuda_loader.h")
TW_CHECK_ABI(GetDeviceCount, cudaGetDeviceCount);
TW_CHECK_ABI(GetErrorName, cudaGetErrorName);
TW_CHECK_ABI(GetErrorString, cudaGetErrorString);
TW_CHECK_ABI(DriverGetVersion, cudaDriverGetVersion);
TW_CHECK_ABI(RuntimeGetVersion, cudaRuntimeGetVersion);
TW_CHECK_ABI(SetDevice, cudaSetDevice);
TW_CHECK_ABI(MallocHost, cudaMallocHost);
TW_CHECK_ABI(FreeHost, cudaFreeHost);
TW_CHECK_ABI(HostRegister, cudaHostRegister);
TW_CHECK_ABI(HostUnregister, cudaHostUnregister);
TW_CHECK_ABI(Malloc, cudaMalloc);
TW_CHECK_ABI(Free, cudaFree);
TW_CHECK_ABI(StreamCreateWithFlags, cudaStreamCreateWithFlags);
TW_CHECK_ABI(StreamDestroy, cudaStreamDestroy);
TW_CHECK_ABI(StreamSynchronize, cudaStreamSynchronize);
TW_CHECK_ABI(MemcpyAsync, cudaMemcpyAsync);
TW_CHECK_ABI(Memcpy2DAsync, cudaMemcpy2DAsync);
TW_CHECK_ABI(StreamWaitEvent, cudaStreamWaitEvent);
TW_CHECK_ABI(LaunchHostFunc, cudaLaunchHostFunc);
TW_CHECK_ABI(EventCreateWithFlags, cudaEventCreateWithFlags);
TW_CHECK_ABI(EventDestroy, cudaEventDestroy);
TW_CHECK_ABI(EventRecord, cudaEventRecord);
TW_CHECK_ABI(EventQuery, cudaEventQuery);
TW_CHECK_ABI(EventSynchronize, cudaEventSynchronize);
TW_CHECK_ABI(IpcGetMemHandle, cudaIpcGetMemHandle);
TW_CHECK_ABI(IpcOpenMemHandle, cudaIpcOpenMemHandle);
TW_CHECK_ABI(IpcCloseMemHandle, cudaIpcCloseMemHandle);
#undef TW_CHECK_ABI

// The cuFile entry points the loader requires exist with these names.
static_assert(std::is_function_v<decltype(cuFileRead)>);
static_assert(std::is_function_v<decltype(cuFileBatchIOSubmit)>);
static_assert(std::is_function_v<decltype(cuFileBufRegister)>);

}  // namespace
}  // namespace tw::gpu
