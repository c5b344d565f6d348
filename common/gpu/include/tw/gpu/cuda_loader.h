// CudaLibraries: loads the CUDA runtime (libcudart.so.12) and cuFile (libcufile.so.0) with
// dlopen at run time and says, in a readable Status, why the GPU path or GDS is off.
//
// The same binaries run on nodes with and without GPUs: nothing links CUDA at build time. The
// function types below are declared here rather than taken from CUDA's headers: cudaError_t is
// an int enum (0 = success), streams, events and device pointers are opaque pointers, and
// cudaIpcMemHandle_t is a 64-byte struct passed by value; these are stable across CUDA 12.
//
// Reasons reported (availability().cuda):
//   NOT_FOUND            libcudart.so.12 not found (no CUDA runtime on the library path)
//   FAILED_PRECONDITION  the library loads but lacks a function we need, or is not loadable
//   UNAVAILABLE          cudaGetDeviceCount failed: error 35 (no driver, or one older than the
//                        runtime), error 100 (no device visible), or another error, by name
// and for GDS (availability().gds): libcufile.so.0 not found, lacks a function, or the CUDA path
// is off.
//
// Threading: Load may be called from any thread; the result is immutable. Lifetime: the loaded
// libraries are never unloaded (unloading the CUDA runtime while its state lives is unsafe);
// the function pointers stay valid for the life of the process.
#ifndef TW_GPU_CUDA_LOADER_H_
#define TW_GPU_CUDA_LOADER_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "tw/common/status.h"

namespace tw::gpu {

// The cudaError_t values the loader names.
inline constexpr int kCudaSuccess = 0;                   // cudaSuccess
inline constexpr int kCudaErrorInsufficientDriver = 35;  // driver missing or older than runtime
inline constexpr int kCudaErrorNoDevice = 100;           // no CUDA-capable device visible

// The CUDA runtime functions the CUDA backend uses, resolved by name.
struct CudaRuntimeApi {
  struct IpcHandleAbi {
    char reserved[64];
  };
  int (*GetDeviceCount)(int* count);
  const char* (*GetErrorName)(int error);
  const char* (*GetErrorString)(int error);
  int (*DriverGetVersion)(int* version);
  int (*RuntimeGetVersion)(int* version);
  int (*SetDevice)(int device);
  int (*MallocHost)(void** ptr, std::size_t bytes);
  int (*FreeHost)(void* ptr);
  int (*HostRegister)(void* ptr, std::size_t bytes, unsigned flags);
  int (*HostUnregister)(void* ptr);
  int (*Malloc)(void** ptr, std::size_t bytes);
  int (*Free)(void* ptr);
  int (*StreamCreateWithFlags)(void** stream, unsigned flags);
  int (*StreamDestroy)(void* stream);
  int (*StreamSynchronize)(void* stream);
  int (*MemcpyAsync)(void* dst, const void* src, std::size_t bytes, int kind, void* stream);
  int (*Memcpy2DAsync)(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                       std::size_t width, std::size_t height, int kind, void* stream);
  int (*StreamWaitEvent)(void* stream, void* event, unsigned flags);
  int (*LaunchHostFunc)(void* stream, void (*fn)(void*), void* user_data);
  int (*EventCreateWithFlags)(void** event, unsigned flags);
  int (*EventDestroy)(void* event);
  int (*EventRecord)(void* event, void* stream);
  int (*EventQuery)(void* event);
  int (*EventSynchronize)(void* event);
  int (*IpcGetMemHandle)(IpcHandleAbi* handle, void* device_ptr);
  int (*IpcOpenMemHandle)(void** device_ptr, IpcHandleAbi handle, unsigned flags);
  int (*IpcCloseMemHandle)(void* device_ptr);
};

// Where to look for the libraries.
struct LoaderOptions {
  // Directories tried in order; empty: the dynamic linker's own search (LD_LIBRARY_PATH,
  // ld.so.cache, the default paths).
  std::vector<std::string> search_dirs;
  std::string cudart_name = "libcudart.so.12";  // the CUDA 12 runtime's soname
  std::string cufile_name = "libcufile.so.0";   // cuFile's soname
};

// What the loader found.
struct GpuAvailability {
  Status cuda;              // OK: the runtime loaded and sees at least one device
  int device_count = 0;     // devices the runtime sees (0 unless cuda is OK)
  int runtime_version = 0;  // e.g. 12040 for 12.4; 0 when unknown
  int driver_version = 0;   // the CUDA version the driver supports; 0 when none
  Status gds;               // OK: libcufile loaded with the functions we need
  std::string cudart_path;  // the library that was loaded, when one was
  // One line for the log, `twctl stat` and /readyz: "gpu on: 2 devices ..." or "gpu off: ...".
  std::string Describe() const;
};

class CudaLibraries {
 public:
  // Never fails: what is missing is reported in availability().
  static CudaLibraries Load(const LoaderOptions& options = {});

  const GpuAvailability& availability() const { return availability_; }
  // The runtime's functions; null unless availability().cuda is OK.
  const CudaRuntimeApi* runtime() const { return availability_.cuda.ok() ? &runtime_ : nullptr; }
  // dlopen handle of libcufile (its functions are resolved by the CUDA backend); null unless
  // availability().gds is OK.
  void* cufile_handle() const { return availability_.gds.ok() ? cufile_ : nullptr; }

 private:
  CudaLibraries() = default;
  GpuAvailability availability_;
  CudaRuntimeApi runtime_{};
  void* cufile_ = nullptr;
};

// "cudaErrorNoDevice"-style name and meaning of the cudaError_t values the loader names; other
// values get "error N".
std::string DescribeCudaError(int error);

}  // namespace tw::gpu

#endif  // TW_GPU_CUDA_LOADER_H_
