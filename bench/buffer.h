// Buffer: anonymous memory for benchmark sources and destinations, pre-faulted (MAP_POPULATE
// plus a write per page, so no figure pays page faults) and page-aligned (usable with
// O_DIRECT). data() is null when the mapping failed. Not copyable; one owner.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>

namespace tw::bench {

class Buffer {
 public:
  explicit Buffer(size_t n) : size_(n) {
    void* p =
        mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
    if (data_ != nullptr) {
      for (size_t i = 0; i < n; i += 4096) data_[i] = static_cast<uint8_t>(i >> 12);
    }
  }
  ~Buffer() {
    if (data_ != nullptr) munmap(data_, size_);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_;
  size_t size_;
};

}  // namespace tw::bench
