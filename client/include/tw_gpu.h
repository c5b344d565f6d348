/* tw_gpu.h — libtwclient's GPU C ABI: pinning the arena for DMA, and moving the blocks of a
 * chunk between an engine's paged KV cache in GPU memory and the chunk's per-layer segments in
 * the arena, asynchronously, on the engine's CUDA stream, with one event per layer.
 *
 * CUDA is loaded at run time (dlopen of libcudart.so.12): the same library works on machines
 * without a GPU, where tw_gpu_open(TW_GPU_CUDA, ...) fails with TW_E_FAILED_PRECONDITION and the
 * reason (tw_gpu_availability() gives the same line: "gpu off: error 100 ..."). TW_GPU_CPU opens
 * a backend that runs the same queue logic on the CPU ("device memory" is host memory from
 * tw_gpu_alloc_device): tests use it.
 *
 * The paged layout is described, not named (docs/gpu.md gives vLLM's layouts in these terms):
 * each layer is planes_per_layer planes (K and V; one for MLA); block b of plane p of layer l is
 * plane_block_bytes contiguous bytes at planes[l * planes_per_layer + p].device_ptr
 * + b * block_stride. A chunk's segment of one layer in the arena is, for each plane in order,
 * the blocks of the block table in table order: planes_per_layer * n_blocks * plane_block_bytes
 * bytes (tw_kv_cache_segment_bytes). A block id of -1 is a hole (skipped). Consecutive block
 * ids are merged into one copy per plane (a 2-D copy when the plane's block_stride exceeds
 * plane_block_bytes).
 *
 * Streams and events are the backend's: with CUDA, a stream is a cudaStream_t (0 = the legacy
 * default stream; PyTorch's torch.cuda.Stream.cuda_stream) and tw_kv_transfer_event returns the
 * cudaEvent_t of a layer. Errors follow tw_client.h (TW_OK or a TW_E_* code, tw_last_error()).
 *
 * Threading: a tw_gpu and a tw_kv_cache may be used from any number of threads; a
 * tw_kv_transfer by one thread at a time. Lifetime: objects keep what they use alive (closing a
 * tw_gpu before its caches or transfers is safe); device memory named by a layout and the arena
 * must stay valid until a transfer's events have completed.
 */
#ifndef TW_GPU_H_
#define TW_GPU_H_

#include "tw_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_gpu tw_gpu;
typedef struct tw_kv_cache tw_kv_cache;
typedef struct tw_kv_transfer tw_kv_transfer;

/* Backends. */
enum {
  TW_GPU_CUDA = 0, /* the CUDA runtime, loaded at run time */
  TW_GPU_CPU = 1   /* the CPU implementation (tests, machines without a GPU) */
};

/* Copy directions. */
enum {
  TW_KV_SAVE = 0, /* paged blocks → arena segments (device to host) */
  TW_KV_LOAD = 1  /* arena segments → paged blocks (host to device) */
};

/* One line on this process's CUDA: "gpu on: 1 device(s), CUDA runtime 12.4, ...; gds on" or
 * "gpu off: <why>; gds off: <why>", NUL-terminated into buf; *needed (may be NULL) gets the
 * size with the NUL; TW_E_RESOURCE_EXHAUSTED when buf_size is smaller. */
TW_CLIENT_API int tw_gpu_availability(char* buf, size_t buf_size, size_t* needed);

/* Opens a backend on `device` (CUDA device ordinal; ignored by TW_GPU_CPU). */
TW_CLIENT_API int tw_gpu_open(int kind, int device, tw_gpu** out);
/* NULL is a no-op. Caches and transfers made from it stay usable. */
TW_CLIENT_API void tw_gpu_close(tw_gpu* gpu);
/* "cuda" or "cpu". */
TW_CLIENT_API const char* tw_gpu_backend_name(tw_gpu* gpu);

/* Device memory (cudaMalloc), streams, a plain copy and synchronisation: enough to drive and
 * test transfers without another CUDA binding. `kind` of tw_gpu_copy: 1 host to device, 2 device
 * to host, 3 device to device (cudaMemcpyKind). */
TW_CLIENT_API int tw_gpu_alloc_device(tw_gpu* gpu, uint64_t bytes, uint64_t* device_ptr);
TW_CLIENT_API int tw_gpu_free_device(tw_gpu* gpu, uint64_t device_ptr);
TW_CLIENT_API int tw_gpu_stream_create(tw_gpu* gpu, uint64_t* stream);
TW_CLIENT_API int tw_gpu_stream_destroy(tw_gpu* gpu, uint64_t stream);
TW_CLIENT_API int tw_gpu_stream_synchronize(tw_gpu* gpu, uint64_t stream);
TW_CLIENT_API int tw_gpu_copy(tw_gpu* gpu, uint64_t dst, uint64_t src, uint64_t bytes, int kind,
                              uint64_t stream);

/* Pins [ptr, ptr + bytes) (cudaHostRegister) in slices of at most slice_bytes (0 = 1 GiB), so
 * copies to and from it are DMA; on failure the slices done are undone and the error names the
 * failing slice. tw_gpu_unregister_host takes the same arguments. */
TW_CLIENT_API int tw_gpu_register_host(tw_gpu* gpu, void* ptr, uint64_t bytes,
                                       uint64_t slice_bytes);
TW_CLIENT_API int tw_gpu_unregister_host(tw_gpu* gpu, void* ptr, uint64_t bytes,
                                         uint64_t slice_bytes);
/* Pins the client's whole arena (as tw_gpu_register_host); it is unpinned by tw_client_close,
 * before the arena is unmapped. TW_E_ALREADY_EXISTS when already pinned. */
TW_CLIENT_API int tw_client_pin_arena(tw_client* client, tw_gpu* gpu, uint64_t slice_bytes);

/* One plane of one layer. */
typedef struct tw_kv_plane {
  uint64_t device_ptr;   /* address of block 0's bytes of this plane */
  uint64_t block_stride; /* bytes from block b to block b + 1 */
} tw_kv_plane;

typedef struct tw_kv_layout {
  uint32_t n_layers;
  uint32_t planes_per_layer;  /* 2 (K, V) or 1 (MLA); at most 8 */
  uint64_t plane_block_bytes; /* bytes of one block of one plane */
  uint32_t block_size;        /* tokens per block (divides plane_block_bytes) */
  uint64_t num_blocks;        /* blocks in the cache: block ids are below this */
  const tw_kv_plane* planes;  /* n_layers * planes_per_layer, layer after layer */
} tw_kv_layout;

/* Validates and copies the layout (TW_E_INVALID_ARGUMENT naming the bad field: zero counts,
 * strides shorter than a block, overlapping planes, ...). */
TW_CLIENT_API int tw_kv_cache_create(tw_gpu* gpu, const tw_kv_layout* layout, tw_kv_cache** out);
TW_CLIENT_API void tw_kv_cache_free(tw_kv_cache* cache);
/* Bytes of one layer's segment for a block table of n_blocks entries. */
TW_CLIENT_API uint64_t tw_kv_cache_segment_bytes(tw_kv_cache* cache, size_t n_blocks);

/* Queues a save or load of layers [first_layer, first_layer + n_layers) on `stream` and returns
 * at once. layer_offsets[i] is where layer first_layer + i's segment lies in
 * [host_base, host_base + host_size) (normally the arena: tw_client_arena). Bad tables (a block
 * out of range or twice), ranges outside the host buffer, overlapping save segments: nothing is
 * queued and TW_E_INVALID_ARGUMENT says which. */
TW_CLIENT_API int tw_kv_transfer_start(tw_kv_cache* cache, int direction, const int32_t* block_ids,
                                       size_t n_blocks, uint8_t* host_base, uint64_t host_size,
                                       const uint64_t* layer_offsets, uint32_t first_layer,
                                       uint32_t n_layers, uint64_t stream, tw_kv_transfer** out);
/* Layer numbers below are absolute (first_layer ..). */
/* Blocks until layer `layer`'s copies are done; their error if they failed. */
TW_CLIENT_API int tw_kv_transfer_wait_layer(tw_kv_transfer* t, uint32_t layer);
/* *done = 1 when layer `layer` is complete, else 0. */
TW_CLIENT_API int tw_kv_transfer_query_layer(tw_kv_transfer* t, uint32_t layer, int* done);
/* Work queued on `stream` after this call waits for layer `layer` (cudaStreamWaitEvent). */
TW_CLIENT_API int tw_kv_transfer_stream_wait_layer(tw_kv_transfer* t, uint32_t layer,
                                                   uint64_t stream);
/* The backend's event of layer `layer` (a cudaEvent_t with CUDA); 0 when out of range. */
TW_CLIENT_API uint64_t tw_kv_transfer_event(tw_kv_transfer* t, uint32_t layer);
/* Waits for every layer. */
TW_CLIENT_API int tw_kv_transfer_wait(tw_kv_transfer* t);
/* Copy calls queued (after merging runs of blocks) and bytes moved. */
TW_CLIENT_API uint64_t tw_kv_transfer_copies(tw_kv_transfer* t);
TW_CLIENT_API uint64_t tw_kv_transfer_bytes(tw_kv_transfer* t);
/* Frees the transfer (its events go back to the cache's pool); does not wait. NULL: no-op. */
TW_CLIENT_API void tw_kv_transfer_free(tw_kv_transfer* t);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TW_GPU_H_ */
