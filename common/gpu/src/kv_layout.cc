#include "tw/gpu/kv_layout.h"

#include <algorithm>

#include "fmt/format.h"

namespace tw::gpu {
namespace {

// End (exclusive) of plane `p`'s last block, or false on overflow.
bool PlaneEnd(const KvPlane& p, std::uint64_t num_blocks, std::uint64_t block_bytes,
              std::uint64_t* end) {
  std::uint64_t span = 0;
  if (__builtin_mul_overflow(p.block_stride, num_blocks - 1, &span)) return false;
  if (__builtin_add_overflow(span, block_bytes, &span)) return false;
  return !__builtin_add_overflow(static_cast<std::uint64_t>(p.base), span, end);
}

// Whether two planes with the same (non-zero) stride have a block in common: their blocks repeat
// with the stride, so only the distance between the bases modulo the stride matters.
bool SameStrideOverlap(const KvPlane& a, const KvPlane& b, std::uint64_t bytes) {
  const std::uint64_t lo = std::min(a.base, b.base), hi = std::max(a.base, b.base);
  const std::uint64_t stride = a.block_stride;
  const std::uint64_t d = (hi - lo) % stride;
  return d < bytes || stride - d < bytes;
}

}  // namespace

Status KvLayout::Validate() const {
  if (num_layers == 0) return InvalidArgumentError("kv layout: num_layers must be > 0");
  if (planes_per_layer == 0 || planes_per_layer > kMaxPlanes) {
    return InvalidArgumentError(fmt::format("kv layout: planes_per_layer {} is not in 1..{}",
                                            planes_per_layer, kMaxPlanes));
  }
  if (plane_block_bytes == 0) {
    return InvalidArgumentError("kv layout: plane_block_bytes must be > 0");
  }
  if (block_size == 0 || plane_block_bytes % block_size != 0) {
    return InvalidArgumentError(
        fmt::format("kv layout: block_size {} must be > 0 and divide plane_block_bytes {}",
                    block_size, plane_block_bytes));
  }
  if (num_blocks == 0 || num_blocks > (std::uint64_t{1} << 31)) {
    return InvalidArgumentError(
        fmt::format("kv layout: num_blocks {} is not in 1..2^31", num_blocks));
  }
  const std::size_t expected = std::size_t{num_layers} * planes_per_layer;
  if (planes.size() != expected) {
    return InvalidArgumentError(
        fmt::format("kv layout: {} planes given, num_layers × planes_per_layer is {}",
                    planes.size(), expected));
  }
  std::vector<std::uint64_t> ends(planes.size());
  for (std::size_t i = 0; i < planes.size(); ++i) {
    const KvPlane& p = planes[i];
    const auto where =
        fmt::format("kv layout: layer {} plane {}", i / planes_per_layer, i % planes_per_layer);
    if (p.base == 0) return InvalidArgumentError(where + ": null device address");
    if (num_blocks > 1 && p.block_stride < plane_block_bytes) {
      return InvalidArgumentError(
          fmt::format("{}: block_stride {} is shorter than a block ({} bytes): blocks overlap",
                      where, p.block_stride, plane_block_bytes));
    }
    if (!PlaneEnd(p, num_blocks, plane_block_bytes, &ends[i])) {
      return InvalidArgumentError(where + ": the last block's address overflows");
    }
  }
  for (std::size_t i = 0; i < planes.size(); ++i) {
    for (std::size_t j = i + 1; j < planes.size(); ++j) {
      const KvPlane &a = planes[i], &b = planes[j];
      if (a.base >= ends[j] || b.base >= ends[i]) continue;  // spans apart
      // Spans that meet overlap unless both planes repeat with one stride and interleave
      // (FlashInfer's K and V); different strides that meet are refused as overlapping.
      const bool overlap = num_blocks == 1 || a.block_stride != b.block_stride ||
                           SameStrideOverlap(a, b, plane_block_bytes);
      if (overlap) {
        return InvalidArgumentError(
            fmt::format("kv layout: blocks of layer {} plane {} and layer {} plane {} overlap",
                        i / planes_per_layer, i % planes_per_layer, j / planes_per_layer,
                        j % planes_per_layer));
      }
    }
  }
  return OkStatus();
}

StatusOr<std::vector<BlockRun>> PlanBlockRuns(std::span<const std::int32_t> table,
                                              std::uint64_t num_blocks) {
  if (table.empty()) return InvalidArgumentError("block table: no blocks");
  std::vector<std::int32_t> seen;
  seen.reserve(table.size());
  std::vector<BlockRun> runs;
  for (std::size_t i = 0; i < table.size(); ++i) {
    const std::int32_t b = table[i];
    if (b == -1) continue;  // a hole
    if (b < 0 || static_cast<std::uint64_t>(b) >= num_blocks) {
      return InvalidArgumentError(
          fmt::format("block table: entry {} is block {}, not in 0..{} (or -1 for a hole)", i, b,
                      num_blocks - 1));
    }
    seen.push_back(b);
    if (!runs.empty() && runs.back().table_index + runs.back().count == i &&
        runs.back().first_block + runs.back().count == static_cast<std::uint64_t>(b)) {
      ++runs.back().count;
    } else {
      runs.push_back({.first_block = static_cast<std::uint64_t>(b), .table_index = i, .count = 1});
    }
  }
  std::sort(seen.begin(), seen.end());
  auto dup = std::adjacent_find(seen.begin(), seen.end());
  if (dup != seen.end()) {
    return InvalidArgumentError(fmt::format("block table: block {} appears twice", *dup));
  }
  return runs;
}

void PlanLayerCopies(const KvLayout& layout, std::uint32_t layer, std::span<const BlockRun> runs,
                     std::size_t table_size, std::vector<KvCopy>* out) {
  const std::uint64_t width = layout.plane_block_bytes;
  for (std::uint32_t p = 0; p < layout.planes_per_layer; ++p) {
    const KvPlane& plane = layout.plane(layer, p);
    const std::uint64_t plane_offset = std::uint64_t{p} * table_size * width;
    for (const BlockRun& run : runs) {
      KvCopy copy{.device = plane.base + run.first_block * plane.block_stride,
                  .device_pitch = plane.block_stride,
                  .host_offset = plane_offset + run.table_index * width,
                  .width = width,
                  .rows = run.count};
      if (copy.contiguous() || plane.block_stride <= kMaxCopyPitch) {
        out->push_back(copy);
        continue;
      }
      for (std::uint64_t r = 0; r < run.count; ++r) {  // stride past a 2-D copy's pitch limit
        out->push_back({.device = copy.device + r * plane.block_stride,
                        .device_pitch = plane.block_stride,
                        .host_offset = copy.host_offset + r * width,
                        .width = width,
                        .rows = 1});
      }
    }
  }
}

}  // namespace tw::gpu
