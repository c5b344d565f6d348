#include "tw/gpu/pinned_host_range.h"

#include <utility>

namespace tw::gpu {

StatusOr<std::unique_ptr<PinnedHostRange>> PinnedHostRange::Register(
    std::shared_ptr<Backend> backend, void* ptr, std::size_t bytes, std::size_t slice_bytes) {
  if (backend == nullptr) return InvalidArgumentError("pin host range: no backend");
  if (ptr == nullptr || bytes == 0) return InvalidArgumentError("pin host range: empty range");
  if (slice_bytes == 0) slice_bytes = kDefaultSlice;
  TW_RETURN_IF_ERROR(CheckSlices(ptr, bytes, slice_bytes));
  TW_RETURN_IF_ERROR(RegisterHostInSlices(*backend, ptr, bytes, slice_bytes));
  return std::unique_ptr<PinnedHostRange>(
      new PinnedHostRange(std::move(backend), ptr, bytes, slice_bytes));
}

Status PinnedHostRange::CheckSlices(const void* ptr, std::size_t bytes, std::size_t slice_bytes) {
  // CUDA pins whole pages: two slices sharing a page would register it twice.
  if (bytes > slice_bytes &&
      (slice_bytes % kPage != 0 || reinterpret_cast<std::uintptr_t>(ptr) % kPage != 0)) {
    return InvalidArgumentError(
        "pin host range: with several slices, the range and the slice size must be 4 KiB "
        "aligned (two slices must not share a page)");
  }
  return OkStatus();
}

PinnedHostRange::~PinnedHostRange() {
  // Nothing to report to: a failure here leaves a registration CUDA drops at process exit.
  UnregisterHostInSlices(*backend_, ptr_, bytes_, slice_).IgnoreError();
}

}  // namespace tw::gpu
