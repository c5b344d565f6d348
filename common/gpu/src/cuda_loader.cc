#include "tw/gpu/cuda_loader.h"

#include <dlfcn.h>

#include <utility>

#include "fmt/format.h"

namespace tw::gpu {
namespace {

// dlopen of `name`, in each search dir or through the dynamic linker's search. On failure,
// `error` holds why (dlerror() per place tried) and `found_unloadable` whether a file existed.
void* OpenLibrary(const LoaderOptions& options, const std::string& name, std::string* path,
                  std::string* error, bool* found_unloadable) {
  std::vector<std::string> candidates;
  if (options.search_dirs.empty()) {
    candidates.push_back(name);
  } else {
    for (const auto& dir : options.search_dirs) candidates.push_back(dir + "/" + name);
  }
  *found_unloadable = false;
  for (const auto& candidate : candidates) {
    void* handle = ::dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) {
      *path = candidate;
      return handle;
    }
    const char* why = ::dlerror();
    const std::string message = why != nullptr ? why : "unknown dlopen error";
    // glibc says "cannot open shared object file: No such file or directory" when nothing is
    // there; anything else means a file was found but could not be loaded.
    if (message.find("No such file") == std::string::npos) *found_unloadable = true;
    if (!error->empty()) *error += "; ";
    *error += message;
  }
  return nullptr;
}

template <typename Fn>
bool Resolve(void* handle, const char* symbol, Fn* out, std::string* missing) {
  ::dlerror();
  void* p = ::dlsym(handle, symbol);
  if (p == nullptr) {
    if (!missing->empty()) *missing += ", ";
    *missing += symbol;
    return false;
  }
  *out = reinterpret_cast<Fn>(p);
  return true;
}

std::string Where(const LoaderOptions& options) {
  if (options.search_dirs.empty()) return "on the library path";
  std::string dirs;
  for (const auto& d : options.search_dirs) dirs += (dirs.empty() ? "" : ", ") + d;
  return "in " + dirs;
}

// The cuFile functions the CUDA backend will call; their presence decides whether GDS is on.
constexpr const char* kCufileSymbols[] = {
    "cuFileDriverOpen",       "cuFileDriverClose",    "cuFileHandleRegister",
    "cuFileHandleDeregister", "cuFileRead",           "cuFileBufRegister",
    "cuFileBufDeregister",    "cuFileBatchIOSetUp",   "cuFileBatchIOSubmit",
    "cuFileBatchIOGetStatus", "cuFileBatchIODestroy",
};

}  // namespace

std::string DescribeCudaError(int error) {
  switch (error) {
    case kCudaSuccess:
      return "cudaSuccess";
    case kCudaErrorInsufficientDriver:
      return "error 35 (cudaErrorInsufficientDriver): no NVIDIA driver, or a driver older than "
             "this CUDA runtime";
    case kCudaErrorNoDevice:
      return "error 100 (cudaErrorNoDevice): no CUDA device is visible to this process "
             "(check the container's GPU visibility, CUDA_VISIBLE_DEVICES)";
  }
  return fmt::format("error {}", error);
}

std::string GpuAvailability::Describe() const {
  std::string line;
  if (cuda.ok()) {
    line = fmt::format("gpu on: {} device(s), CUDA runtime {}.{}, driver supports {}.{}",
                       device_count, runtime_version / 1000, runtime_version % 1000 / 10,
                       driver_version / 1000, driver_version % 1000 / 10);
  } else {
    line = "gpu off: " + std::string(cuda.message());
  }
  line += gds.ok() ? "; gds on" : "; gds off: " + std::string(gds.message());
  return line;
}

CudaLibraries CudaLibraries::Load(const LoaderOptions& options) {
  CudaLibraries libs;
  GpuAvailability& a = libs.availability_;
  std::string error;
  bool unloadable = false;
  void* cudart = OpenLibrary(options, options.cudart_name, &a.cudart_path, &error, &unloadable);
  if (cudart == nullptr) {
    if (unloadable) {
      a.cuda = FailedPreconditionError(fmt::format("{} found {} but cannot be loaded: {}",
                                                   options.cudart_name, Where(options), error));
    } else {
      a.cuda = NotFoundError(fmt::format("{} not found {} (no CUDA runtime installed): {}",
                                         options.cudart_name, Where(options), error));
    }
  } else {
    CudaRuntimeApi& r = libs.runtime_;
    std::string missing;
    Resolve(cudart, "cudaGetDeviceCount", &r.GetDeviceCount, &missing);
    Resolve(cudart, "cudaGetErrorName", &r.GetErrorName, &missing);
    Resolve(cudart, "cudaGetErrorString", &r.GetErrorString, &missing);
    Resolve(cudart, "cudaDriverGetVersion", &r.DriverGetVersion, &missing);
    Resolve(cudart, "cudaRuntimeGetVersion", &r.RuntimeGetVersion, &missing);
    Resolve(cudart, "cudaSetDevice", &r.SetDevice, &missing);
    Resolve(cudart, "cudaMallocHost", &r.MallocHost, &missing);
    Resolve(cudart, "cudaFreeHost", &r.FreeHost, &missing);
    Resolve(cudart, "cudaHostRegister", &r.HostRegister, &missing);
    Resolve(cudart, "cudaHostUnregister", &r.HostUnregister, &missing);
    Resolve(cudart, "cudaMalloc", &r.Malloc, &missing);
    Resolve(cudart, "cudaFree", &r.Free, &missing);
    Resolve(cudart, "cudaStreamCreateWithFlags", &r.StreamCreateWithFlags, &missing);
    Resolve(cudart, "cudaStreamDestroy", &r.StreamDestroy, &missing);
    Resolve(cudart, "cudaStreamSynchronize", &r.StreamSynchronize, &missing);
    Resolve(cudart, "cudaMemcpyAsync", &r.MemcpyAsync, &missing);
    Resolve(cudart, "cudaMemcpy2DAsync", &r.Memcpy2DAsync, &missing);
    Resolve(cudart, "cudaStreamWaitEvent", &r.StreamWaitEvent, &missing);
    Resolve(cudart, "cudaLaunchHostFunc", &r.LaunchHostFunc, &missing);
    Resolve(cudart, "cudaEventCreateWithFlags", &r.EventCreateWithFlags, &missing);
    Resolve(cudart, "cudaEventDestroy", &r.EventDestroy, &missing);
    Resolve(cudart, "cudaEventRecord", &r.EventRecord, &missing);
    Resolve(cudart, "cudaEventQuery", &r.EventQuery, &missing);
    Resolve(cudart, "cudaEventSynchronize", &r.EventSynchronize, &missing);
    Resolve(cudart, "cudaIpcGetMemHandle", &r.IpcGetMemHandle, &missing);
    Resolve(cudart, "cudaIpcOpenMemHandle", &r.IpcOpenMemHandle, &missing);
    Resolve(cudart, "cudaIpcCloseMemHandle", &r.IpcCloseMemHandle, &missing);
    if (!missing.empty()) {
      a.cuda = FailedPreconditionError(
          fmt::format("{} lacks {}: not a CUDA 12 runtime", a.cudart_path, missing));
    } else {
      r.RuntimeGetVersion(&a.runtime_version);
      if (r.DriverGetVersion(&a.driver_version) != kCudaSuccess) a.driver_version = 0;
      int count = 0;
      const int rc = r.GetDeviceCount(&count);
      if (rc != kCudaSuccess) {
        a.cuda = UnavailableError("cudaGetDeviceCount: " + DescribeCudaError(rc));
      } else if (count <= 0) {
        a.cuda = UnavailableError("cudaGetDeviceCount: no CUDA device");
      } else {
        a.device_count = count;
      }
    }
  }

  std::string cufile_path;
  error.clear();
  void* cufile = OpenLibrary(options, options.cufile_name, &cufile_path, &error, &unloadable);
  if (cufile == nullptr) {
    a.gds =
        unloadable
            ? FailedPreconditionError(
                  fmt::format("{} cannot be loaded: {}", options.cufile_name, error))
            : NotFoundError(fmt::format("{} not found {}", options.cufile_name, Where(options)));
  } else {
    std::string missing;
    for (const char* symbol : kCufileSymbols) {
      void* fn = nullptr;
      Resolve(cufile, symbol, &fn, &missing);
    }
    if (!missing.empty()) {
      a.gds = FailedPreconditionError(fmt::format("{} lacks {}", cufile_path, missing));
    } else if (!a.cuda.ok()) {
      a.gds =
          FailedPreconditionError(fmt::format("{} loaded, but the CUDA path is off", cufile_path));
    } else {
      libs.cufile_ = cufile;
    }
  }
  return libs;
}

}  // namespace tw::gpu
