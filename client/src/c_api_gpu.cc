// The GPU part of the C ABI (tw_gpu.h): a thin layer over tw_gpu's backends, PinnedHostRange and
// PagedKvCopier. Each object holds shared ownership of the backend, so the order in which a
// caller frees them does not matter.
#include <cstring>
#include <memory>
#include <string>

#include "c_api_internal.h"
#include "tw/common/strings.h"
#include "tw/gpu/cpu_backend.h"
#include "tw/gpu/cuda_backend.h"
#include "tw/gpu/cuda_loader.h"
#include "tw/gpu/paged_kv_copier.h"
#include "tw/gpu/pinned_host_range.h"
#include "tw_gpu.h"

struct tw_gpu {
  std::shared_ptr<tw::gpu::Backend> backend;
};

struct tw_kv_cache {
  std::unique_ptr<tw::gpu::PagedKvCopier> copier;
};

struct tw_kv_transfer {
  std::unique_ptr<tw::gpu::KvTransfer> impl;
};

namespace tw::client::capi {
namespace {

// The CUDA libraries, loaded once per process on first use (never unloaded).
const gpu::CudaLibraries& Libraries() {
  static const gpu::CudaLibraries libs = gpu::CudaLibraries::Load();
  return libs;
}

gpu::Stream AsStream(uint64_t s) { return gpu::Stream{static_cast<std::uintptr_t>(s)}; }
void* AsPtr(uint64_t p) { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(p)); }

StatusOr<gpu::CopyKind> CopyKindOf(int kind) {
  switch (kind) {
    case 1:
      return gpu::CopyKind::kHostToDevice;
    case 2:
      return gpu::CopyKind::kDeviceToHost;
    case 3:
      return gpu::CopyKind::kDeviceToDevice;
  }
  return InvalidArgumentError(StrCat("copy: kind ", kind, " is not 1, 2 or 3"));
}

}  // namespace
}  // namespace tw::client::capi

using namespace tw::client::capi;  // NOLINT: the C entry points below are thin wrappers

extern "C" {

int tw_gpu_availability(char* buf, size_t buf_size, size_t* needed) try {
  const std::string line = Libraries().availability().Describe();
  if (needed != nullptr) *needed = line.size() + 1;
  if (buf == nullptr || buf_size < line.size() + 1) {
    return Fail(tw::ResourceExhaustedError(tw::StrCat(
        "gpu availability: the buffer holds ", buf_size, " bytes, ", line.size() + 1, " needed")));
  }
  std::memcpy(buf, line.c_str(), line.size() + 1);
  return TW_OK;
}
TW_C_CATCH("tw_gpu_availability")

int tw_gpu_open(int kind, int device, tw_gpu** out) try {
  if (out == nullptr) return FailInvalid("gpu open: NULL argument");
  if (kind == TW_GPU_CPU) {
    *out = new tw_gpu{std::make_shared<tw::gpu::CpuBackend>()};
    return TW_OK;
  }
  if (kind != TW_GPU_CUDA) return FailInvalid(tw::StrCat("gpu open: kind ", kind, " unknown"));
  auto backend = tw::gpu::CudaBackend::Create(Libraries(), device);
  if (!backend.ok()) return Fail(backend.status());
  *out = new tw_gpu{std::shared_ptr<tw::gpu::Backend>(std::move(*backend))};
  return TW_OK;
}
TW_C_CATCH("tw_gpu_open")

void tw_gpu_close(tw_gpu* gpu) try { delete gpu; }
TW_C_CATCH_VOID("tw_gpu_close")

const char* tw_gpu_backend_name(tw_gpu* gpu) try {
  return gpu == nullptr ? "" : gpu->backend->name().data();
}
TW_C_CATCH_RETURN("tw_gpu_backend_name", "")

int tw_gpu_alloc_device(tw_gpu* gpu, uint64_t bytes, uint64_t* device_ptr) try {
  if (gpu == nullptr || device_ptr == nullptr) return FailInvalid("alloc device: NULL argument");
  auto p = gpu->backend->AllocateDevice(bytes);
  if (!p.ok()) return Fail(p.status());
  *device_ptr = reinterpret_cast<std::uintptr_t>(*p);
  return TW_OK;
}
TW_C_CATCH("tw_gpu_alloc_device")

int tw_gpu_free_device(tw_gpu* gpu, uint64_t device_ptr) try {
  if (gpu == nullptr) return FailInvalid("free device: NULL gpu");
  return Fail(gpu->backend->FreeDevice(AsPtr(device_ptr)));
}
TW_C_CATCH("tw_gpu_free_device")

int tw_gpu_stream_create(tw_gpu* gpu, uint64_t* stream) try {
  if (gpu == nullptr || stream == nullptr) return FailInvalid("stream create: NULL argument");
  auto s = gpu->backend->CreateStream();
  if (!s.ok()) return Fail(s.status());
  *stream = static_cast<std::uintptr_t>(*s);
  return TW_OK;
}
TW_C_CATCH("tw_gpu_stream_create")

int tw_gpu_stream_destroy(tw_gpu* gpu, uint64_t stream) try {
  if (gpu == nullptr) return FailInvalid("stream destroy: NULL gpu");
  return Fail(gpu->backend->DestroyStream(AsStream(stream)));
}
TW_C_CATCH("tw_gpu_stream_destroy")

int tw_gpu_stream_synchronize(tw_gpu* gpu, uint64_t stream) try {
  if (gpu == nullptr) return FailInvalid("stream synchronize: NULL gpu");
  return Fail(gpu->backend->SynchronizeStream(AsStream(stream)));
}
TW_C_CATCH("tw_gpu_stream_synchronize")

int tw_gpu_copy(tw_gpu* gpu, uint64_t dst, uint64_t src, uint64_t bytes, int kind,
                uint64_t stream) try {
  if (gpu == nullptr) return FailInvalid("copy: NULL gpu");
  auto k = CopyKindOf(kind);
  if (!k.ok()) return Fail(k.status());
  return Fail(gpu->backend->CopyAsync(AsPtr(dst), AsPtr(src), bytes, *k, AsStream(stream)));
}
TW_C_CATCH("tw_gpu_copy")

int tw_gpu_register_host(tw_gpu* gpu, void* ptr, uint64_t bytes, uint64_t slice_bytes) try {
  if (gpu == nullptr) return FailInvalid("register host: NULL gpu");
  if (ptr == nullptr || bytes == 0) return FailInvalid("register host: empty range");
  if (slice_bytes == 0) slice_bytes = tw::gpu::PinnedHostRange::kDefaultSlice;
  if (auto s = tw::gpu::PinnedHostRange::CheckSlices(ptr, bytes, slice_bytes); !s.ok()) {
    return Fail(s);
  }
  return Fail(tw::gpu::RegisterHostInSlices(*gpu->backend, ptr, bytes, slice_bytes));
}
TW_C_CATCH("tw_gpu_register_host")

int tw_gpu_unregister_host(tw_gpu* gpu, void* ptr, uint64_t bytes, uint64_t slice_bytes) try {
  if (gpu == nullptr) return FailInvalid("unregister host: NULL gpu");
  if (slice_bytes == 0) slice_bytes = tw::gpu::PinnedHostRange::kDefaultSlice;
  return Fail(tw::gpu::UnregisterHostInSlices(*gpu->backend, ptr, bytes, slice_bytes));
}
TW_C_CATCH("tw_gpu_unregister_host")

int tw_client_pin_arena(tw_client* client, tw_gpu* gpu, uint64_t slice_bytes) try {
  if (client == nullptr || gpu == nullptr) return FailInvalid("pin arena: NULL argument");
  if (client->pinned != nullptr) {
    return Fail(tw::AlreadyExistsError("pin arena: the arena is already pinned"));
  }
  auto pinned = tw::gpu::PinnedHostRange::Register(gpu->backend, client->impl->arena_data(),
                                                   client->impl->arena_size(), slice_bytes);
  if (!pinned.ok()) return Fail(pinned.status().WithPrefix("pin arena"));
  client->pinned = std::move(*pinned);
  return TW_OK;
}
TW_C_CATCH("tw_client_pin_arena")

int tw_kv_cache_create(tw_gpu* gpu, const tw_kv_layout* l, tw_kv_cache** out) try {
  if (gpu == nullptr || l == nullptr || out == nullptr) {
    return FailInvalid("kv cache: NULL argument");
  }
  const uint64_t n_planes = uint64_t{l->n_layers} * l->planes_per_layer;
  if (l->planes == nullptr && n_planes != 0) return FailInvalid("kv cache: planes is NULL");
  if (n_planes > (uint64_t{1} << 20)) {
    return FailInvalid(tw::StrCat("kv cache: ", n_planes, " planes is too many"));
  }
  tw::gpu::KvLayout layout{.num_layers = l->n_layers,
                           .planes_per_layer = l->planes_per_layer,
                           .plane_block_bytes = l->plane_block_bytes,
                           .block_size = l->block_size,
                           .num_blocks = l->num_blocks};
  layout.planes.reserve(n_planes);
  for (uint64_t i = 0; i < n_planes; ++i) {
    layout.planes.push_back(
        {static_cast<std::uintptr_t>(l->planes[i].device_ptr), l->planes[i].block_stride});
  }
  auto copier = tw::gpu::PagedKvCopier::Create(gpu->backend, std::move(layout));
  if (!copier.ok()) return Fail(copier.status());
  *out = new tw_kv_cache{std::move(*copier)};
  return TW_OK;
}
TW_C_CATCH("tw_kv_cache_create")

void tw_kv_cache_free(tw_kv_cache* cache) try { delete cache; }
TW_C_CATCH_VOID("tw_kv_cache_free")

uint64_t tw_kv_cache_segment_bytes(tw_kv_cache* cache, size_t n_blocks) try {
  return cache == nullptr ? 0 : cache->copier->layout().SegmentBytes(n_blocks);
}
TW_C_CATCH_RETURN("tw_kv_cache_segment_bytes", 0)

int tw_kv_transfer_start(tw_kv_cache* cache, int direction, const int32_t* block_ids,
                         size_t n_blocks, uint8_t* host_base, uint64_t host_size,
                         const uint64_t* layer_offsets, uint32_t first_layer, uint32_t n_layers,
                         uint64_t stream, tw_kv_transfer** out) try {
  if (cache == nullptr || out == nullptr) return FailInvalid("kv transfer: NULL argument");
  if ((block_ids == nullptr && n_blocks != 0) || (layer_offsets == nullptr && n_layers != 0)) {
    return FailInvalid("kv transfer: NULL block_ids or layer_offsets");
  }
  if (direction != TW_KV_SAVE && direction != TW_KV_LOAD) {
    return FailInvalid(tw::StrCat("kv transfer: direction ", direction, " is not save or load"));
  }
  tw::gpu::KvTransferSpec spec{.direction = direction == TW_KV_SAVE ? tw::gpu::KvDirection::kSave
                                                                    : tw::gpu::KvDirection::kLoad,
                               .block_table = {block_ids, n_blocks},
                               .host_base = host_base,
                               .host_size = host_size,
                               .layer_offsets = {layer_offsets, n_layers},
                               .first_layer = first_layer,
                               .stream = AsStream(stream)};
  auto t = cache->copier->Start(spec);
  if (!t.ok()) return Fail(t.status());
  *out = new tw_kv_transfer{std::move(*t)};
  return TW_OK;
}
TW_C_CATCH("tw_kv_transfer_start")

int tw_kv_transfer_wait_layer(tw_kv_transfer* t, uint32_t layer) try {
  if (t == nullptr) return FailInvalid("kv transfer: NULL");
  return Fail(t->impl->WaitLayer(layer));
}
TW_C_CATCH("tw_kv_transfer_wait_layer")

int tw_kv_transfer_query_layer(tw_kv_transfer* t, uint32_t layer, int* done) try {
  if (t == nullptr || done == nullptr) return FailInvalid("kv transfer: NULL argument");
  auto d = t->impl->LayerDone(layer);
  if (!d.ok()) return Fail(d.status());
  *done = *d ? 1 : 0;
  return TW_OK;
}
TW_C_CATCH("tw_kv_transfer_query_layer")

int tw_kv_transfer_stream_wait_layer(tw_kv_transfer* t, uint32_t layer, uint64_t stream) try {
  if (t == nullptr) return FailInvalid("kv transfer: NULL");
  return Fail(t->impl->StreamWaitLayer(layer, AsStream(stream)));
}
TW_C_CATCH("tw_kv_transfer_stream_wait_layer")

uint64_t tw_kv_transfer_event(tw_kv_transfer* t, uint32_t layer) try {
  if (t == nullptr) return 0;
  auto e = t->impl->LayerEvent(layer);
  return e.ok() ? static_cast<std::uintptr_t>(*e) : 0;
}
TW_C_CATCH_RETURN("tw_kv_transfer_event", 0)

int tw_kv_transfer_wait(tw_kv_transfer* t) try {
  if (t == nullptr) return FailInvalid("kv transfer: NULL");
  return Fail(t->impl->Wait());
}
TW_C_CATCH("tw_kv_transfer_wait")

uint64_t tw_kv_transfer_copies(tw_kv_transfer* t) try {
  return t == nullptr ? 0 : t->impl->copies();
}
TW_C_CATCH_RETURN("tw_kv_transfer_copies", 0)

uint64_t tw_kv_transfer_bytes(tw_kv_transfer* t) try { return t == nullptr ? 0 : t->impl->bytes(); }
TW_C_CATCH_RETURN("tw_kv_transfer_bytes", 0)

void tw_kv_transfer_free(tw_kv_transfer* t) try { delete t; }
TW_C_CATCH_VOID("tw_kv_transfer_free")

}  // extern "C"
