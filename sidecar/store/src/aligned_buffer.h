// AlignedBuffer: a kIoAlign-aligned heap buffer for O_DIRECT I/O (metadata blocks, bounce
// buffers). Move-only; no threading rules.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace tw::store {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  // REQUIRES: size is a multiple of 4096. Zero-filled unless !zero. data() is null when out
  // of memory.
  explicit AlignedBuffer(uint64_t size, bool zero = true) : size_(size) {
    void* p = nullptr;
    if (size && posix_memalign(&p, 4096, size) == 0) {
      if (zero) std::memset(p, 0, size);
      p_.reset(static_cast<uint8_t*>(p));
    }
  }
  uint8_t* data() const { return p_.get(); }
  uint64_t size() const { return size_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> p_;
  uint64_t size_ = 0;
};

}  // namespace tw::store
