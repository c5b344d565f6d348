// Descriptor passing and shared-memory arenas for the twd client protocol: both sides of
// the HELLO handshake use these. The client creates a sealed memfd arena, pre-faults it and
// sends it with SCM_RIGHTS; twd receives it, checks size and seals, and maps it.
//
// Threading: free functions, thread-safe; UniqueFd and Arena are single-owner values.
// Lifetime: UniqueFd closes its descriptor on destruction; Arena unmaps on destruction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tw/common/status.h"

namespace tw::protocol {

// Owns a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.Release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = o.Release();
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Sends all of `data` on a stream socket, with `fd` (if >= 0) attached to the first byte as
// SCM_RIGHTS. Blocks until everything is written (retries EINTR and partial writes).
Status SendWithFd(int sock, std::string_view data, int fd);

// One recvmsg() into `buf`. Received descriptors (MSG_CMSG_CLOEXEC) are appended to `fds`;
// truncated control data closes them and fails. Returns the byte count (0 = peer closed);
// EAGAIN/EWOULDBLOCK → kUnavailable.
StatusOr<size_t> RecvWithFds(int sock, std::span<uint8_t> buf, std::vector<UniqueFd>* fds);

// Creates a memfd of `size` bytes with MFD_ALLOW_SEALING and seals it against shrinking and
// growing (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), as twd requires.
StatusOr<UniqueFd> CreateArenaMemfd(std::string_view name, uint64_t size);

// What twd checks before mapping a client's arena: a regular memfd of exactly `size` bytes
// sealed against shrinking (a client that truncated its arena would make twd's copies fault).
Status CheckArenaFd(int fd, uint64_t size);

// A shared mapping of an arena memfd.
class Arena {
 public:
  Arena() = default;
  ~Arena();
  Arena(Arena&& o) noexcept;
  Arena& operator=(Arena&& o) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Maps `fd` (read-write, MAP_SHARED). With `prefault`, every page is populated (clients
  // pre-fault so their own cgroup is charged for the pages).
  static StatusOr<Arena> Map(int fd, uint64_t size, bool prefault);

  // Fills the page tables of [offset, offset + length) (clamped to the arena) for writing,
  // without touching the bytes, for the pages already allocated (pages not yet allocated are
  // left alone, so this never allocates memory): twd populates a client's arena with this so
  // its copies take no page faults. Thread-safe; the bytes may be in use meanwhile.
  Status Populate(uint64_t offset, uint64_t length) const;

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace tw::protocol
