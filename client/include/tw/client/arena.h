// tw::client::Arena — the shared-memory arena a client hands to twd: an anonymous memfd
// (sealed against shrinking and growing), sized with ftruncate, mapped
// shared, and pre-faulted by the client, so its pages are charged to the client's cgroup and
// not to twd's. Requests name byte ranges of it; twd maps the same pages.
//
// Threading: the mapping may be read and written from any thread; the object itself is
// immutable after Create(). Lifetime: owns the fd and the mapping; destroying unmaps and
// closes (twd keeps its own mapping until the connection ends).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "tw/common/status.h"

namespace tw::client {

class Arena {
 public:
  // Page granularity arenas are rounded up to (2 MiB: huge-page friendly).
  static constexpr uint64_t kAlignment = uint64_t{2} << 20;

  // Creates, seals, maps and pre-faults `size` bytes (rounded up to kAlignment; 0 is an
  // error), followed by `reserved` bytes (rounded up likewise) that the library keeps for
  // itself (lookup key chains): size() and bytes() cover only the first part, while twd maps
  // all mapped_size() bytes. `name` shows in /proc/PID/fd.
  static StatusOr<Arena> Create(uint64_t size, const std::string& name = "tw-arena",
                                uint64_t reserved = 0);

  Arena();
  Arena(Arena&& other) noexcept;
  Arena& operator=(Arena&& other) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena();

  int fd() const;
  uint8_t* data() const;
  uint64_t size() const;
  // The whole mapping: size() bytes for the caller, then the reserved part.
  uint64_t mapped_size() const;
  std::span<uint8_t> bytes() const { return {data(), size()}; }
  // True when [offset, offset + length) lies inside the arena.
  bool Contains(uint64_t offset, uint64_t length) const {
    return offset <= size() && length <= size() - offset;
  }

 private:
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

}  // namespace tw::client
