// PinnedHostRange: a host range (the client's arena, twd's DRAM tier) registered with a Backend
// as pinned memory in slices (RegisterHostInSlices) for as long as the object lives, so copies
// between it and device memory are DMA. Destroying it unregisters every slice.
//
// Threading: immutable after Register. Lifetime: shares the backend; the range must stay mapped
// until the object is destroyed (unregister before unmapping), and no copy may use it after.
#ifndef TW_GPU_PINNED_HOST_RANGE_H_
#define TW_GPU_PINNED_HOST_RANGE_H_

#include <cstddef>
#include <memory>

#include "tw/gpu/backend.h"

namespace tw::gpu {

class PinnedHostRange {
 public:
  // The slice size when the caller gives none: 1 GiB keeps each cudaHostRegister call short
  // (about 0.1 s per GiB) and far below the sizes that fail in one call.
  static constexpr std::size_t kDefaultSlice = std::size_t{1} << 30;
  static constexpr std::size_t kPage = 4096;

  // Registers [ptr, ptr + bytes); the error names the failing slice (the others are undone).
  // REQUIRES (INVALID_ARGUMENT otherwise) when more than one slice: ptr and slice_bytes are
  // multiples of kPage.
  static StatusOr<std::unique_ptr<PinnedHostRange>> Register(std::shared_ptr<Backend> backend,
                                                             void* ptr, std::size_t bytes,
                                                             std::size_t slice_bytes = 0);
  // OK unless several slices would share a page (see Register). REQUIRES: slice_bytes > 0.
  static Status CheckSlices(const void* ptr, std::size_t bytes, std::size_t slice_bytes);
  ~PinnedHostRange();
  PinnedHostRange(const PinnedHostRange&) = delete;
  PinnedHostRange& operator=(const PinnedHostRange&) = delete;

  void* data() const { return ptr_; }
  std::size_t size() const { return bytes_; }
  std::size_t slices() const { return (bytes_ + slice_ - 1) / slice_; }

 private:
  PinnedHostRange(std::shared_ptr<Backend> b, void* p, std::size_t n, std::size_t s)
      : backend_(std::move(b)), ptr_(p), bytes_(n), slice_(s) {}
  std::shared_ptr<Backend> backend_;
  void* ptr_;
  std::size_t bytes_;
  std::size_t slice_;
};

}  // namespace tw::gpu

#endif  // TW_GPU_PINNED_HOST_RANGE_H_
