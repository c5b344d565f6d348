// KvLayout and PlanKvCopies: how an engine's paged KV cache lies in device memory, described by
// the caller rather than hard-coded, and the pure planning of the copies that move the blocks of
// one chunk between that cache and a contiguous chunk segment in host memory.
//
// The description. A layer's KV cache is one or more *planes* (K and V; one plane for MLA's
// single latent tensor). Block b of plane p of layer l is `plane_block_bytes` contiguous bytes at
// planes[l × planes_per_layer + p].base + b × block_stride. This covers vLLM's layouts without
// naming them:
//   FlashAttention  [2, num_blocks, block_size, heads, head_dim]: 2 planes, the V plane at
//                   base + num_blocks × block bytes, block_stride = plane_block_bytes (a run of
//                   consecutive blocks is one contiguous range);
//   FlashInfer      [num_blocks, 2, block_size, heads, head_dim] (and its HND variant
//                   [num_blocks, 2, heads, block_size, head_dim]): 2 planes, V at base + block
//                   bytes, block_stride = 2 × plane_block_bytes (a run is a strided 2-D copy);
//   MLA             [num_blocks, block_size, latent_dim]: 1 plane;
//   separate K and V tensors, or one tensor for all layers ([num_blocks, layers, 2, ...]): each
//                   plane its own base and stride.
// A block's bytes are copied as they are: the chunk keeps the engine's in-block order, which the
// namespace's kv_layout field names.
//
// The chunk segment of one layer (host side) is [plane][block of the table][plane_block_bytes]:
// plane 0 of every block of the table in table order, then plane 1, ... A block table entry of -1
// is a hole: its bytes in the segment are skipped (a save leaves them as they are, a load writes
// no block), so a load can skip the blocks an engine already has.
//
// Merging: consecutive table entries b, b + 1 form a run; each (layer, plane, run) is one copy:
// a 1-D copy when block_stride == plane_block_bytes (or the run has one block), else one 2-D copy
// (rows = blocks, pitch = block_stride). A descending or scattered table costs one copy per
// block; a 256-token chunk of 16-token blocks allocated in order costs one copy per plane.
//
// Threading: pure functions and values. Lifetime: plans hold no pointers into the layout.
#ifndef TW_GPU_KV_LAYOUT_H_
#define TW_GPU_KV_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "tw/common/status.h"

namespace tw::gpu {

// One plane of one layer.
struct KvPlane {
  std::uintptr_t base = 0;         // device address of block 0 of this plane
  std::uint64_t block_stride = 0;  // bytes from block b to block b + 1
};

struct KvLayout {
  std::uint32_t num_layers = 0;         // layers described
  std::uint32_t planes_per_layer = 0;   // 2 (K, V) or 1 (MLA); at most kMaxPlanes
  std::uint64_t plane_block_bytes = 0;  // bytes of one block of one plane
  std::uint32_t block_size = 0;         // tokens per block (divides plane_block_bytes)
  std::uint64_t num_blocks = 0;         // blocks in the cache: table entries are below this
  std::vector<KvPlane> planes;          // num_layers × planes_per_layer, layer after layer

  static constexpr std::uint32_t kMaxPlanes = 8;

  // OK, or INVALID_ARGUMENT naming the field: counts, sizes, strides shorter than a block,
  // address overflow, and blocks of two planes that overlap.
  Status Validate() const;
  const KvPlane& plane(std::uint32_t layer, std::uint32_t p) const {
    return planes[std::size_t{layer} * planes_per_layer + p];
  }
  // Bytes of one layer's chunk segment for a table of n entries (holes included).
  std::uint64_t SegmentBytes(std::size_t n) const {
    return std::uint64_t{planes_per_layer} * n * plane_block_bytes;
  }
};

// A run of consecutive blocks of the table.
struct BlockRun {
  std::uint64_t first_block = 0;  // block id of the run's first block
  std::uint64_t table_index = 0;  // its index in the block table
  std::uint64_t count = 0;        // blocks in the run
};

// Largest pitch handed to one 2-D copy (CUDA's limit); a longer stride falls back to one 1-D
// copy per block.
inline constexpr std::uint64_t kMaxCopyPitch = (std::uint64_t{1} << 31) - 1;

// The runs of a block table, in table order. INVALID_ARGUMENT for an empty table, an entry below
// -1 or at/after num_blocks, and a block named twice.
StatusOr<std::vector<BlockRun>> PlanBlockRuns(std::span<const std::int32_t> table,
                                              std::uint64_t num_blocks);

// One planned copy between a layer's cache and its chunk segment.
struct KvCopy {
  std::uintptr_t device = 0;       // address of the run's first block
  std::uint64_t device_pitch = 0;  // block_stride (rows > 1 and not contiguous: a 2-D copy)
  std::uint64_t host_offset = 0;   // offset of the run in the layer's segment
  std::uint64_t width = 0;         // plane_block_bytes (rows == 1 or contiguous: width × rows)
  std::uint64_t rows = 0;          // blocks
  // True when the device side is one contiguous range (a 1-D copy of width × rows bytes).
  bool contiguous() const { return rows == 1 || device_pitch == width; }
};

// The copies of `layer` for `runs` of a table of `table_size` entries, plane by plane.
// REQUIRES: layout.Validate() is OK, layer < num_layers, runs from PlanBlockRuns on the table.
void PlanLayerCopies(const KvLayout& layout, std::uint32_t layer, std::span<const BlockRun> runs,
                     std::size_t table_size, std::vector<KvCopy>* out);

}  // namespace tw::gpu

#endif  // TW_GPU_KV_LAYOUT_H_
