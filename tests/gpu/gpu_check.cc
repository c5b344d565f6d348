// tw-gpu-check: what only a machine with an NVIDIA GPU can show, run by scripts/gpu-check.sh.
//
//   1. byte-exact save/load round trips of the paged KV copy engine through the real CUDA
//      runtime, for each layout (FlashAttention, FlashInfer, MLA, separate K/V, one tensor for
//      all layers), with a block table with holes and reversed blocks, into pinned memory from
//      cudaMallocHost and into ordinary memory pinned in slices (cudaHostRegister);
//   2. legacy CUDA IPC from a second process: a tensor at an interior pointer of a cudaMalloc
//      allocation is sent as (handle of the allocation base, offset), found with
//      cuMemGetAddressRange; the child opens the handle and checks the bytes;
//   3. VMM memory (cuMemCreate, as vLLM's allocator and PyTorch's expandable segments): legacy
//      IPC refuses it; it is exported as a POSIX file descriptor, passed over a Unix socket with
//      SCM_RIGHTS to a second process that imports, maps and checks it;
//   4. cuFile (GPUDirect Storage) reads into device memory, with compatibility mode allowed
//      (so it runs without nvidia-fs.ko), one plain read and one through the batch API;
//   5. with --bench: `tw-bench gpu`'s figures through CUDA (bench/gpu_bench.cc).
// `tw-gpu-check --bench-cpu [--json]` runs only the benchmark on the CPU backend (no GPU needed).
// Without a usable GPU it prints why and exits 77 (skipped). Exit 1 when a check fails. fork()
// is never called: the children are spawned (posix_spawn) before cuFile is opened.
#include <cuda.h>
#include <cufile.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gpu_bench.h"
#include "tw/gpu/cuda_backend.h"
#include "tw/gpu/paged_kv_copier.h"
#include "tw/gpu/pinned_host_range.h"

extern char** environ;

namespace tw::gpu {
namespace {

int failures = 0;

void Report(const std::string& name, const Status& s) {
  std::printf("%s %s%s%s\n", s.ok() ? "PASS" : "FAIL", name.c_str(), s.ok() ? "" : ": ",
              s.ok() ? "" : s.ToString().c_str());
  std::fflush(stdout);
  if (!s.ok()) ++failures;
}

#define CHECK_OR_RETURN(cond, msg) \
  if (!(cond)) return InternalError(msg)

std::vector<std::uint8_t> Pattern(std::size_t n, std::uint32_t seed) {
  std::vector<std::uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

// ---- 1. paged round trips ------------------------------------------------------------------

enum class Shape { kFlashAttn, kFlashInfer, kMla, kSeparateKv, kCrossLayer };
constexpr const char* kShapeNames[] = {"flash_attn", "flashinfer", "mla", "separate_kv",
                                       "cross_layer"};
constexpr std::uint32_t kLayers = 4, kBlockSize = 16;
constexpr std::uint64_t kTokenBytes = 1024, kNumBlocks = 64;
constexpr std::uint64_t kBlockBytes = kBlockSize * kTokenBytes;

KvLayout LayoutOf(Shape shape, std::uintptr_t base) {
  const std::uint32_t planes = shape == Shape::kMla ? 1 : 2;
  KvLayout l{.num_layers = kLayers,
             .planes_per_layer = planes,
             .plane_block_bytes = kBlockBytes,
             .block_size = kBlockSize,
             .num_blocks = kNumBlocks};
  const std::uint64_t layer_bytes = planes * kNumBlocks * kBlockBytes;
  for (std::uint32_t i = 0; i < kLayers; ++i) {
    for (std::uint32_t p = 0; p < planes; ++p) {
      switch (shape) {
        case Shape::kFlashAttn:
        case Shape::kSeparateKv:
        case Shape::kMla:
          l.planes.push_back({base + i * layer_bytes + p * kNumBlocks * kBlockBytes, kBlockBytes});
          break;
        case Shape::kFlashInfer:
          l.planes.push_back({base + i * layer_bytes + p * kBlockBytes, 2 * kBlockBytes});
          break;
        case Shape::kCrossLayer:
          l.planes.push_back({base + (i * 2 + p) * kBlockBytes, kLayers * 2 * kBlockBytes});
          break;
      }
    }
  }
  return l;
}

// Offset of a block of a plane from the start of the cache's allocation.
std::uint64_t BlockOffset(const KvLayout& l, std::uint32_t layer, std::uint32_t p,
                          std::uintptr_t base, std::int32_t block) {
  return l.plane(layer, p).base - base + block * l.plane(layer, p).block_stride;
}

Status RoundTrip(std::shared_ptr<Backend> b, Shape shape, bool registered) {
  const std::uint32_t planes = shape == Shape::kMla ? 1 : 2;
  const std::uint64_t cache_bytes = kLayers * planes * kNumBlocks * kBlockBytes;
  TW_ASSIGN_OR_RETURN(void* src, b->AllocateDevice(cache_bytes));
  TW_ASSIGN_OR_RETURN(void* dst, b->AllocateDevice(cache_bytes));
  TW_ASSIGN_OR_RETURN(Stream stream, b->CreateStream());
  const auto mirror = Pattern(cache_bytes, 11);
  const auto noise = Pattern(cache_bytes, 12);
  TW_RETURN_IF_ERROR(
      b->CopyAsync(src, mirror.data(), cache_bytes, CopyKind::kHostToDevice, stream));
  TW_RETURN_IF_ERROR(b->CopyAsync(dst, noise.data(), cache_bytes, CopyKind::kHostToDevice, stream));
  TW_RETURN_IF_ERROR(b->SynchronizeStream(stream));
  const KvLayout ls = LayoutOf(shape, reinterpret_cast<std::uintptr_t>(src));
  const KvLayout ld = LayoutOf(shape, reinterpret_cast<std::uintptr_t>(dst));
  TW_ASSIGN_OR_RETURN(auto save_copier, PagedKvCopier::Create(b, ls));
  TW_ASSIGN_OR_RETURN(auto load_copier, PagedKvCopier::Create(b, ld));
  const std::vector<std::int32_t> save_table = {4, 5, 6, 7, -1, 20, 19, 18, 0, 40, 41, 63};
  const std::vector<std::int32_t> load_table = {63, 62, 61, 60, -1, 1, 2, 3, 10, 30, 31, 5};
  const std::uint64_t seg = ls.SegmentBytes(save_table.size());
  const std::uint64_t host_bytes = kLayers * seg;
  std::uint8_t* host = nullptr;
  std::unique_ptr<void, decltype(&std::free)> plain(nullptr, &std::free);
  std::unique_ptr<PinnedHostRange> pinned;
  if (registered) {  // page-aligned, as slices must not share a page
    plain.reset(std::aligned_alloc(4096, (host_bytes + 4095) / 4096 * 4096));
    host = static_cast<std::uint8_t*>(plain.get());
    std::memset(host, 0xAB, host_bytes);
    TW_ASSIGN_OR_RETURN(pinned, PinnedHostRange::Register(b, host, host_bytes, 1 << 20));
  } else {
    TW_ASSIGN_OR_RETURN(void* h, b->AllocateHost(host_bytes));
    host = static_cast<std::uint8_t*>(h);
    std::memset(host, 0xAB, host_bytes);
  }
  std::vector<std::uint64_t> offsets;
  for (std::uint32_t l = 0; l < kLayers; ++l) offsets.push_back((kLayers - 1 - l) * seg);
  TW_ASSIGN_OR_RETURN(auto saved, save_copier->Start({.direction = KvDirection::kSave,
                                                      .block_table = save_table,
                                                      .host_base = host,
                                                      .host_size = host_bytes,
                                                      .layer_offsets = offsets,
                                                      .stream = stream}));
  for (std::uint32_t l = 0; l < kLayers; ++l) TW_RETURN_IF_ERROR(saved->WaitLayer(l));
  const std::uint64_t want_copies = kLayers * planes * 7;  // runs: 4-7, 20, 19, 18, 0, 40-41, 63
  CHECK_OR_RETURN(saved->copies() == want_copies, "save: unexpected copy count");
  const auto src_base = reinterpret_cast<std::uintptr_t>(src);
  for (std::uint32_t l = 0; l < kLayers; ++l) {
    for (std::uint32_t p = 0; p < planes; ++p) {
      const KvPlane& plane = ls.plane(l, p);
      for (std::size_t i = 0; i < save_table.size(); ++i) {
        const std::uint8_t* got = host + offsets[l] + (p * save_table.size() + i) * kBlockBytes;
        if (save_table[i] < 0) {
          CHECK_OR_RETURN(got[0] == 0xAB && got[kBlockBytes - 1] == 0xAB, "save wrote a hole");
          continue;
        }
        const std::uint64_t at = plane.base - src_base + save_table[i] * plane.block_stride;
        CHECK_OR_RETURN(std::memcmp(got, mirror.data() + at, kBlockBytes) == 0,
                        "save: a block differs");
      }
    }
  }
  TW_ASSIGN_OR_RETURN(auto loaded, load_copier->Start({.direction = KvDirection::kLoad,
                                                       .block_table = load_table,
                                                       .host_base = host,
                                                       .host_size = host_bytes,
                                                       .layer_offsets = offsets,
                                                       .stream = stream}));
  TW_RETURN_IF_ERROR(loaded->Wait());
  std::vector<std::uint8_t> back(cache_bytes);
  TW_RETURN_IF_ERROR(b->CopyAsync(back.data(), dst, cache_bytes, CopyKind::kDeviceToHost, stream));
  TW_RETURN_IF_ERROR(b->SynchronizeStream(stream));
  const auto dst_base = reinterpret_cast<std::uintptr_t>(dst);
  for (std::uint32_t l = 0; l < kLayers; ++l) {
    for (std::uint32_t p = 0; p < planes; ++p) {
      for (std::size_t i = 0; i < load_table.size(); ++i) {
        if (load_table[i] < 0) continue;
        const KvPlane& sp = ls.plane(l, p);
        const KvPlane& dp = ld.plane(l, p);
        const std::uint64_t from = sp.base - src_base + save_table[i] * sp.block_stride;
        const std::uint64_t to = dp.base - dst_base + load_table[i] * dp.block_stride;
        CHECK_OR_RETURN(std::memcmp(back.data() + to, mirror.data() + from, kBlockBytes) == 0,
                        "load: a block differs");
      }
      // Block 50 is in no table: untouched.
      const std::uint64_t untouched = BlockOffset(ld, l, p, dst_base, 50);
      CHECK_OR_RETURN(
          std::memcmp(back.data() + untouched, noise.data() + untouched, kBlockBytes) == 0,
          "load touched a block outside its table");
    }
  }
  saved.reset();
  loaded.reset();
  pinned.reset();
  if (!registered) TW_RETURN_IF_ERROR(b->FreeHost(host));
  TW_RETURN_IF_ERROR(b->DestroyStream(stream));
  TW_RETURN_IF_ERROR(b->FreeDevice(src));
  return b->FreeDevice(dst);
}

// ---- driver API (VMM, address ranges), resolved from libcuda.so.1 --------------------------

struct Driver {
  decltype(&::cuInit) Init = nullptr;
  decltype(&::cuGetErrorName) GetErrorName = nullptr;
  decltype(&::cuMemGetAddressRange) GetAddressRange = nullptr;
  decltype(&::cuMemGetAllocationGranularity) Granularity = nullptr;
  decltype(&::cuMemCreate) Create = nullptr;
  decltype(&::cuMemAddressReserve) Reserve = nullptr;
  decltype(&::cuMemMap) Map = nullptr;
  decltype(&::cuMemSetAccess) SetAccess = nullptr;
  decltype(&::cuMemExportToShareableHandle) Export = nullptr;
  decltype(&::cuMemImportFromShareableHandle) Import = nullptr;
  decltype(&::cuMemUnmap) Unmap = nullptr;
  decltype(&::cuMemAddressFree) AddressFree = nullptr;
  decltype(&::cuMemRelease) Release = nullptr;

  Status Check(CUresult r, const char* call) const {
    if (r == CUDA_SUCCESS) return OkStatus();
    const char* name = nullptr;
    GetErrorName(r, &name);
    return InternalError(std::string(call) + ": " + (name ? name : "?"));
  }
};

StatusOr<Driver> LoadDriver() {
  void* h = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) return NotFoundError(std::string("libcuda.so.1: ") + ::dlerror());
  Driver d;
  std::string missing;
  auto get = [&](auto* fn, const char* name) {
    *fn = reinterpret_cast<std::remove_pointer_t<decltype(fn)>>(::dlsym(h, name));
    if (*fn == nullptr) missing += std::string(" ") + name;
  };
  get(&d.Init, "cuInit");
  get(&d.GetErrorName, "cuGetErrorName");
  get(&d.GetAddressRange, "cuMemGetAddressRange_v2");
  get(&d.Granularity, "cuMemGetAllocationGranularity");
  get(&d.Create, "cuMemCreate");
  get(&d.Reserve, "cuMemAddressReserve");
  get(&d.Map, "cuMemMap");
  get(&d.SetAccess, "cuMemSetAccess");
  get(&d.Export, "cuMemExportToShareableHandle");
  get(&d.Import, "cuMemImportFromShareableHandle");
  get(&d.Unmap, "cuMemUnmap");
  get(&d.AddressFree, "cuMemAddressFree");
  get(&d.Release, "cuMemRelease");
  if (!missing.empty()) return FailedPreconditionError("libcuda.so.1 lacks" + missing);
  TW_RETURN_IF_ERROR(d.Check(d.Init(0), "cuInit"));
  return d;
}

// Spawns this program with `args`; returns its exit status (0 = its checks passed).
StatusOr<int> SpawnSelf(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  std::string self = "/proc/self/exe";
  argv.push_back(self.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  const int rc = ::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ);
  if (rc != 0) return ErrnoStatus(rc, "posix_spawn");
  int status = 0;
  if (::waitpid(pid, &status, 0) < 0) return ErrnoStatus(errno, "waitpid");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string Hex(const std::uint8_t* p, std::size_t n) {
  std::string s;
  char buf[3];
  for (std::size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof(buf), "%02x", p[i]);
    s += buf;
  }
  return s;
}

// Checks that `bytes` device bytes at `device` equal Pattern(bytes, seed).
Status ExpectPattern(Backend& b, const void* device, std::size_t bytes, std::uint32_t seed) {
  std::vector<std::uint8_t> got(bytes);
  TW_ASSIGN_OR_RETURN(Stream s, b.CreateStream());
  TW_RETURN_IF_ERROR(b.CopyAsync(got.data(), device, bytes, CopyKind::kDeviceToHost, s));
  TW_RETURN_IF_ERROR(b.SynchronizeStream(s));
  TW_RETURN_IF_ERROR(b.DestroyStream(s));
  CHECK_OR_RETURN(got == Pattern(bytes, seed), "the bytes differ");
  return OkStatus();
}

Status Fill(Backend& b, void* device, std::size_t bytes, std::uint32_t seed) {
  const auto data = Pattern(bytes, seed);
  TW_ASSIGN_OR_RETURN(Stream s, b.CreateStream());
  TW_RETURN_IF_ERROR(b.CopyAsync(device, data.data(), bytes, CopyKind::kHostToDevice, s));
  TW_RETURN_IF_ERROR(b.SynchronizeStream(s));
  return b.DestroyStream(s);
}

// ---- 2. legacy IPC from a second process -----------------------------------------------------

constexpr std::size_t kIpcBytes = 1 << 20;

Status LegacyIpc(Backend& b, const Driver& d) {
  TW_ASSIGN_OR_RETURN(void* alloc, b.AllocateDevice(4 << 20));
  char* tensor = static_cast<char*>(alloc) + (1 << 20) + 4096;  // an interior pointer
  TW_RETURN_IF_ERROR(Fill(b, tensor, kIpcBytes, 21));
  CUdeviceptr base = 0;
  size_t size = 0;
  TW_RETURN_IF_ERROR(d.Check(d.GetAddressRange(&base, &size, reinterpret_cast<CUdeviceptr>(tensor)),
                             "cuMemGetAddressRange"));
  CHECK_OR_RETURN(base == reinterpret_cast<CUdeviceptr>(alloc), "unexpected allocation base");
  TW_ASSIGN_OR_RETURN(IpcMemHandle handle, b.GetIpcHandle(reinterpret_cast<void*>(base)));
  const std::uint64_t offset = reinterpret_cast<CUdeviceptr>(tensor) - base;
  TW_ASSIGN_OR_RETURN(
      int rc, SpawnSelf({"--ipc-child", Hex(handle.bytes.data(), 64), std::to_string(offset)}));
  CHECK_OR_RETURN(rc == 0,
                  "the child process could not read the tensor (exit " + std::to_string(rc) + ")");
  return b.FreeDevice(alloc);
}

int IpcChild(Backend& b, const char* hex, const char* offset) {
  IpcMemHandle h;
  for (int i = 0; i < 64; ++i) {
    unsigned v = 0;
    std::sscanf(hex + 2 * i, "%2x", &v);
    h.bytes[i] = static_cast<std::uint8_t>(v);
  }
  auto base = b.OpenIpcHandle(h);
  if (!base.ok()) {
    std::fprintf(stderr, "ipc child: %s\n", base.status().ToString().c_str());
    return 1;
  }
  Status s = ExpectPattern(b, static_cast<char*>(*base) + std::strtoull(offset, nullptr, 10),
                           kIpcBytes, 21);
  if (!s.ok()) std::fprintf(stderr, "ipc child: %s\n", s.ToString().c_str());
  b.CloseIpcHandle(*base).IgnoreError();
  return s.ok() ? 0 : 1;
}

// ---- 3. VMM memory exported as a POSIX fd over SCM_RIGHTS ------------------------------------

Status SendFd(int sock, int fd, std::uint64_t size) {
  char cbuf[CMSG_SPACE(sizeof(int))] = {};
  iovec iov{&size, sizeof(size)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof(cbuf);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  if (::sendmsg(sock, &msg, 0) != sizeof(size)) return ErrnoStatus(errno, "sendmsg");
  return OkStatus();
}

StatusOr<std::pair<int, std::uint64_t>> RecvFd(int sock) {
  std::uint64_t size = 0;
  char cbuf[CMSG_SPACE(sizeof(int))] = {};
  iovec iov{&size, sizeof(size)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof(cbuf);
  if (::recvmsg(sock, &msg, 0) != sizeof(size)) return ErrnoStatus(errno, "recvmsg");
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == nullptr || c->cmsg_type != SCM_RIGHTS) return InternalError("no fd received");
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return std::pair{fd, size};
}

CUmemAllocationProp VmmProp() {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = 0;
  prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  return prop;
}

// Maps `handle` (size bytes) read-write on device 0; returns the address.
StatusOr<CUdeviceptr> MapVmm(const Driver& d, CUmemGenericAllocationHandle handle, size_t size) {
  CUdeviceptr ptr = 0;
  TW_RETURN_IF_ERROR(d.Check(d.Reserve(&ptr, size, 0, 0, 0), "cuMemAddressReserve"));
  TW_RETURN_IF_ERROR(d.Check(d.Map(ptr, size, 0, handle, 0), "cuMemMap"));
  CUmemAccessDesc access{};
  access.location = VmmProp().location;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  TW_RETURN_IF_ERROR(d.Check(d.SetAccess(ptr, size, &access, 1), "cuMemSetAccess"));
  return ptr;
}

Status VmmFd(Backend& b, const Driver& d) {
  CUmemAllocationProp prop = VmmProp();
  size_t gran = 0;
  TW_RETURN_IF_ERROR(d.Check(d.Granularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM),
                             "cuMemGetAllocationGranularity"));
  const size_t size = (kIpcBytes + gran - 1) / gran * gran;
  CUmemGenericAllocationHandle handle;
  TW_RETURN_IF_ERROR(d.Check(d.Create(&handle, size, &prop, 0), "cuMemCreate"));
  TW_ASSIGN_OR_RETURN(CUdeviceptr ptr, MapVmm(d, handle, size));
  TW_RETURN_IF_ERROR(Fill(b, reinterpret_cast<void*>(ptr), kIpcBytes, 31));
  // What LMCache's users hit: legacy IPC refuses VMM memory.
  auto legacy = b.GetIpcHandle(reinterpret_cast<void*>(ptr));
  std::printf("info legacy IPC on VMM memory: %s\n",
              legacy.ok() ? "accepted (unexpected)" : legacy.status().ToString().c_str());
  int fd = -1;
  TW_RETURN_IF_ERROR(d.Check(d.Export(&fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0),
                             "cuMemExportToShareableHandle"));
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return ErrnoStatus(errno, "socketpair");
  ::fcntl(sv[0], F_SETFD, FD_CLOEXEC);  // the child inherits sv[1] only
  Status sent = SendFd(sv[0], fd, size);
  ::close(fd);
  TW_RETURN_IF_ERROR(sent);
  auto rc = SpawnSelf({"--vmm-child", std::to_string(sv[1])});
  ::close(sv[0]);
  ::close(sv[1]);
  TW_RETURN_IF_ERROR(rc.status());
  CHECK_OR_RETURN(*rc == 0, "the child could not import the fd (exit " + std::to_string(*rc) + ")");
  TW_RETURN_IF_ERROR(d.Check(d.Unmap(ptr, size), "cuMemUnmap"));
  TW_RETURN_IF_ERROR(d.Check(d.AddressFree(ptr, size), "cuMemAddressFree"));
  return d.Check(d.Release(handle), "cuMemRelease");
}

int VmmChild(Backend& b, const char* sock) {
  auto d = LoadDriver();
  auto got = d.ok() ? RecvFd(std::atoi(sock)) : StatusOr<std::pair<int, std::uint64_t>>(d.status());
  Status s = got.status();
  if (s.ok()) {
    CUmemGenericAllocationHandle handle;
    s = d->Check(
        d->Import(&handle, reinterpret_cast<void*>(static_cast<std::uintptr_t>(got->first)),
                  CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
        "cuMemImportFromShareableHandle");
    ::close(got->first);
    if (s.ok()) {
      auto ptr = MapVmm(*d, handle, got->second);
      s = ptr.status();
      if (s.ok()) s = ExpectPattern(b, reinterpret_cast<void*>(*ptr), kIpcBytes, 31);
      if (ptr.ok()) {
        d->Unmap(*ptr, got->second);
        d->AddressFree(*ptr, got->second);
      }
      d->Release(handle);  // the importer's reference: twd releases it when a client dies
    }
  }
  if (!s.ok()) std::fprintf(stderr, "vmm child: %s\n", s.ToString().c_str());
  return s.ok() ? 0 : 1;
}

// ---- 4. cuFile (compatibility mode allowed) --------------------------------------------------

Status CuFile(Backend& b, void* cufile) {
  if (cufile == nullptr) return FailedPreconditionError("libcufile.so.0 is not loaded");
  auto sym = [&](auto* fn, const char* name) {
    *fn = reinterpret_cast<std::remove_pointer_t<decltype(fn)>>(::dlsym(cufile, name));
    return *fn != nullptr;
  };
  decltype(&::cuFileDriverOpen) open_driver;
  decltype(&::cuFileHandleRegister) handle_register;
  decltype(&::cuFileHandleDeregister) handle_deregister;
  decltype(&::cuFileBufRegister) buf_register;
  decltype(&::cuFileBufDeregister) buf_deregister;
  decltype(&::cuFileRead) read;
  decltype(&::cuFileBatchIOSetUp) batch_setup;
  decltype(&::cuFileBatchIOSubmit) batch_submit;
  decltype(&::cuFileBatchIOGetStatus) batch_status;
  decltype(&::cuFileBatchIODestroy) batch_destroy;
  if (!sym(&open_driver, "cuFileDriverOpen") || !sym(&handle_register, "cuFileHandleRegister") ||
      !sym(&handle_deregister, "cuFileHandleDeregister") ||
      !sym(&buf_register, "cuFileBufRegister") || !sym(&buf_deregister, "cuFileBufDeregister") ||
      !sym(&read, "cuFileRead") || !sym(&batch_setup, "cuFileBatchIOSetUp") ||
      !sym(&batch_submit, "cuFileBatchIOSubmit") || !sym(&batch_status, "cuFileBatchIOGetStatus") ||
      !sym(&batch_destroy, "cuFileBatchIODestroy")) {
    return FailedPreconditionError("libcufile.so.0 lacks a function");
  }
  // A file of 8 MiB with a known pattern, read back with O_DIRECT.
  constexpr std::size_t kFile = 8 << 20;
  const char* tmp = std::getenv("TMPDIR");
  std::string path = std::string(tmp ? tmp : "/tmp") + "/tw-gpu-check-cufile.bin";
  {
    const auto data = Pattern(kFile, 41);
    int w = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (w < 0 || ::write(w, data.data(), kFile) != static_cast<ssize_t>(kFile) || ::fsync(w) != 0) {
      return ErrnoStatus(errno, "writing " + path);
    }
    ::close(w);
  }
  const CUfileError_t opened = open_driver();
  if (opened.err != CU_FILE_SUCCESS) {
    return InternalError("cuFileDriverOpen: error " + std::to_string(opened.err));
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT);
  if (fd < 0) return ErrnoStatus(errno, "open O_DIRECT " + path);
  CUfileDescr_t descr{};
  descr.handle.fd = fd;
  descr.type = CU_FILE_HANDLE_TYPE_OPAQUE_FD;
  CUfileHandle_t fh;
  CUfileError_t e = handle_register(&fh, &descr);
  if (e.err != CU_FILE_SUCCESS) {
    return InternalError("cuFileHandleRegister: error " + std::to_string(e.err));
  }
  TW_ASSIGN_OR_RETURN(void* dev, b.AllocateDevice(kFile));
  e = buf_register(dev, kFile, 0);  // registered once, reused by every read
  if (e.err != CU_FILE_SUCCESS) {
    return InternalError("cuFileBufRegister: error " + std::to_string(e.err));
  }
  const ssize_t n = read(fh, dev, kFile / 2, 0, 0);
  if (n != static_cast<ssize_t>(kFile / 2)) {
    return InternalError("cuFileRead returned " + std::to_string(n));
  }
  // The second half through the batch API: 4 reads of 1 MiB.
  CUfileBatchHandle_t batch;
  e = batch_setup(&batch, 4);
  Status batch_result = OkStatus();
  if (e.err != CU_FILE_SUCCESS) {
    batch_result = InternalError("cuFileBatchIOSetUp: error " + std::to_string(e.err));
  } else {
    CUfileIOParams_t io[4] = {};
    for (int i = 0; i < 4; ++i) {
      io[i].mode = CUFILE_BATCH;
      io[i].fh = fh;
      io[i].opcode = CUFILE_READ;
      io[i].u.batch.devPtr_base = dev;
      io[i].u.batch.file_offset = kFile / 2 + i * (1 << 20);
      io[i].u.batch.devPtr_offset = kFile / 2 + i * (1 << 20);
      io[i].u.batch.size = 1 << 20;
    }
    e = batch_submit(batch, 4, io, 0);
    unsigned done = 0;
    CUfileIOEvents_t events[4];
    while (e.err == CU_FILE_SUCCESS && done < 4) {
      unsigned nr = 4;
      e = batch_status(batch, 4 - done, &nr, events, nullptr);
      for (unsigned i = 0; e.err == CU_FILE_SUCCESS && i < nr; ++i) {
        if (events[i].status != CUFILE_COMPLETE) {
          batch_result =
              InternalError("a batch read ended with status " + std::to_string(events[i].status));
        }
      }
      done += nr;
    }
    if (e.err != CU_FILE_SUCCESS) {
      batch_result = InternalError("cuFileBatchIO: error " + std::to_string(e.err));
    }
    batch_destroy(batch);
  }
  Report("cufile batch read (4 x 1 MiB)", batch_result);
  Status s =
      batch_result.ok() ? ExpectPattern(b, dev, kFile, 41) : ExpectPattern(b, dev, kFile / 2, 41);
  buf_deregister(dev);
  handle_deregister(fh);
  ::close(fd);
  ::unlink(path.c_str());
  TW_RETURN_IF_ERROR(b.FreeDevice(dev));
  return s;
}

int Main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "--bench-cpu") {  // `tw-bench gpu --backend cpu` in an optimised build, anywhere
    tw::bench::GpuBenchOptions o;
    o.backend = "cpu";
    o.json = argc > 2 && std::string(argv[2]) == "--json";
    return tw::bench::RunGpuBench(o);
  }
  static const CudaLibraries libs = CudaLibraries::Load();
  const GpuAvailability& a = libs.availability();
  if (mode != "--ipc-child" && mode != "--vmm-child") std::printf("%s\n", a.Describe().c_str());
  if (!a.cuda.ok()) {
    std::printf("SKIP: no usable GPU: %s\n", std::string(a.cuda.message()).c_str());
    return 77;
  }
  auto created = CudaBackend::Create(libs, 0);
  if (!created.ok()) {
    std::printf("FAIL cuda backend: %s\n", created.status().ToString().c_str());
    return 1;
  }
  std::shared_ptr<Backend> b = std::move(*created);
  if (mode == "--ipc-child" && argc == 4) return IpcChild(*b, argv[2], argv[3]);
  if (mode == "--vmm-child" && argc == 3) return VmmChild(*b, argv[2]);

  for (int s = 0; s < 5; ++s) {
    for (bool registered : {false, true}) {
      Report(std::string("paged round trip ") + kShapeNames[s] +
                 (registered ? " (host memory pinned in slices)" : " (cudaMallocHost)"),
             RoundTrip(b, static_cast<Shape>(s), registered));
    }
  }
  auto driver = LoadDriver();
  if (!driver.ok()) {
    Report("driver API", driver.status());
  } else {
    Report("legacy IPC from a second process (allocation base + offset)", LegacyIpc(*b, *driver));
    Report("VMM memory as a POSIX fd over SCM_RIGHTS to a second process", VmmFd(*b, *driver));
  }
  // cuFile last: nothing is spawned after it is opened.
  if (!a.gds.ok()) {
    std::printf("SKIP cufile: %s\n", std::string(a.gds.message()).c_str());
  } else {
    Report("cufile read (compatibility mode allowed)", CuFile(*b, libs.cufile_handle()));
  }
  if (mode == "--bench") {
    std::fflush(stdout);
    tw::bench::GpuBenchOptions o;
    o.backend = "cuda";
    o.json = true;
    if (tw::bench::RunGpuBench(o) != 0) ++failures;
  }
  std::printf("%s: %d check(s) failed\n", failures == 0 ? "OK" : "FAILED", failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace tw::gpu

int main(int argc, char** argv) { return tw::gpu::Main(argc, argv); }
