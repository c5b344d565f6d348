#include "tw/protocol/fd_passing.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "tw/common/strings.h"

namespace tw::protocol {

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Status SendWithFd(int sock, std::string_view data, int fd) {
  size_t sent = 0;
  bool fd_pending = fd >= 0;
  while (sent < data.size() || fd_pending) {
    struct iovec iov;
    iov.iov_base = const_cast<char*>(data.data() + sent);
    iov.iov_len = data.size() - sent;
    struct msghdr msg;
    std::memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    if (fd_pending) {
      std::memset(control, 0, sizeof control);
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "sendmsg");
    }
    if (n == 0 && data.size() > sent) return UnavailableError("sendmsg wrote nothing");
    fd_pending = false;
    sent += static_cast<size_t>(n);
  }
  return OkStatus();
}

StatusOr<size_t> RecvWithFds(int sock, std::span<uint8_t> buf, std::vector<UniqueFd>* fds) {
  struct iovec iov;
  iov.iov_base = buf.data();
  iov.iov_len = buf.size();
  struct msghdr msg;
  std::memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // Room for a handful of descriptors; more than that is truncated and refused.
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return UnavailableError("would block");
    return ErrnoStatus(errno, "recvmsg");
  }
  std::vector<UniqueFd> got;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      got.emplace_back(fd);
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    return InvalidArgumentError("too many descriptors in one message (control data truncated)");
  }
  for (auto& f : got) fds->push_back(std::move(f));
  return static_cast<size_t>(n);
}

StatusOr<UniqueFd> CreateArenaMemfd(std::string_view name, uint64_t size) {
  std::string n(name.empty() ? "tw-arena" : name);
  UniqueFd fd(::memfd_create(n.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return ErrnoStatus(errno, "memfd_create");
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return ErrnoStatus(errno, StrCat("ftruncate memfd to ", size));
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return ErrnoStatus(errno, "F_ADD_SEALS on memfd");
  }
  return fd;
}

Status CheckArenaFd(int fd, uint64_t size) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, "fstat arena");
  if (!S_ISREG(st.st_mode)) return InvalidArgumentError("arena descriptor is not a memfd");
  if (static_cast<uint64_t>(st.st_size) != size) {
    return InvalidArgumentError(StrCat("arena is ", st.st_size, " bytes, hello says ", size));
  }
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) return InvalidArgumentError("arena descriptor is not a sealable memfd");
  if ((seals & F_SEAL_SHRINK) == 0) {
    return InvalidArgumentError("arena memfd must be sealed with F_SEAL_SHRINK");
  }
  return OkStatus();
}

Arena::~Arena() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

Arena::Arena(Arena&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

Arena& Arena::operator=(Arena&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

StatusOr<Arena> Arena::Map(int fd, uint64_t size, bool prefault) {
  if (size == 0) return InvalidArgumentError("empty arena");
  int flags = MAP_SHARED;
#ifdef MAP_POPULATE
  if (prefault) flags |= MAP_POPULATE;
#endif
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (p == MAP_FAILED) return ErrnoStatus(errno, StrCat("mmap arena of ", size, " bytes"));
  Arena a;
  a.data_ = static_cast<uint8_t*>(p);
  a.size_ = size;
  if (prefault) {
    // MAP_POPULATE may map read-only; writing each page makes the client own the pages.
    const long page = ::sysconf(_SC_PAGESIZE);
    volatile uint8_t* v = a.data_;
    for (uint64_t off = 0; off < size; off += static_cast<uint64_t>(page)) v[off] = v[off];
  }
  return a;
}

Status Arena::Populate(uint64_t offset, uint64_t length) const {
  if (offset >= size_) return OkStatus();
  length = std::min(length, size_ - offset);
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t begin = offset / page * page;
  const uint64_t pages = (offset + length - begin + page - 1) / page;
  // Only pages the owner already allocated: populating a hole would allocate it, charged to
  // the caller (a client that skipped its pre-fault must not make twd allocate its arena).
  std::vector<unsigned char> resident(pages);
  if (::mincore(data_ + begin, pages * page, resident.data()) != 0) {
    return ErrnoStatus(errno, "mincore of the arena");
  }
  for (uint64_t i = 0; i < pages;) {
    if ((resident[i] & 1) == 0) {
      ++i;
      continue;
    }
    uint64_t j = i;
    while (j < pages && (resident[j] & 1) != 0) ++j;
    uint8_t* run = data_ + begin + i * page;
    const uint64_t bytes = (j - i) * page;
    if (::madvise(run, bytes, MADV_POPULATE_WRITE) != 0) {
      if (errno != EINVAL) return ErrnoStatus(errno, "madvise(MADV_POPULATE_WRITE) of the arena");
      // Kernels before 5.14: a read of each page maps it (writable: a shared memfd mapping
      // needs no write notification).
      volatile const uint8_t* v = run;
      for (uint64_t off = 0; off < bytes; off += page) (void)v[off];
    }
    i = j;
  }
  return OkStatus();
}

}  // namespace tw::protocol
