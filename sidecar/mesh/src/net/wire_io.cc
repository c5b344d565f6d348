#include "wire_io.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tw/common/strings.h"

namespace tw::mesh::net {

namespace {

// Waits for `events` on fd until the deadline.
Status WaitFd(int fd, short events, Deadline deadline, const char* what) {
  for (;;) {
    int timeout_ms = -1;
    if (deadline != Deadline::max()) {
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) {
        return DeadlineExceededError(StrCat("mesh wire: ", what, ": the deadline passed"));
      }
      // Rounded up: poll must not return before the deadline and spin.
      timeout_ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        left + std::chrono::microseconds(999))
                                        .count());
    }
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, timeout_ms);
    if (n > 0) return OkStatus();
    if (n < 0 && errno != EINTR) {
      return InternalError(StrCat("mesh wire: ", what, ": poll: ", strerror(errno)));
    }
  }
}

Status Errno(const char* what, int err) {
  if (err == ECONNRESET || err == EPIPE || err == ECONNREFUSED || err == ETIMEDOUT ||
      err == EHOSTUNREACH || err == ENETUNREACH || err == ENOTCONN || err == ECONNABORTED) {
    return UnavailableError(StrCat("mesh wire: ", what, ": ", strerror(err)));
  }
  return InternalError(StrCat("mesh wire: ", what, ": ", strerror(err)));
}

}  // namespace

StatusOr<int> WireConnect(const std::string& address, uint32_t port, Deadline deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(address.c_str(), service.c_str(), &hints, &res); rc != 0) {
    return UnavailableError(StrCat("mesh wire: resolve ", address, ": ", gai_strerror(rc)));
  }
  Status last = UnavailableError(StrCat("mesh wire: no address for ", address));
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last = Errno("socket", errno);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    Status st;
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        st = Errno("connect", errno);
      } else {
        st = WaitFd(fd, POLLOUT, deadline, "connect");
        if (st.ok()) {
          int err = 0;
          socklen_t len = sizeof(err);
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
          if (err != 0) st = Errno("connect", err);
        }
      }
    }
    if (st.ok()) {
      freeaddrinfo(res);
      return fd;
    }
    close(fd);
    last = st;
    if (st.code() == StatusCode::kDeadlineExceeded) break;
  }
  freeaddrinfo(res);
  return last;
}

Status WirePrepareAccepted(int fd) {
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
    return Errno("setsockopt", errno);
  }
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return Errno("fcntl", errno);
  return OkStatus();
}

Status WireSendAll(int fd, std::span<iovec> iov, Deadline deadline) {
  size_t i = 0;
  while (i < iov.size()) {
    if (iov[i].iov_len == 0) {
      ++i;
      continue;
    }
    msghdr m{};
    m.msg_iov = iov.data() + i;
    m.msg_iovlen = iov.size() - i;
    const ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        TW_RETURN_IF_ERROR(WaitFd(fd, POLLOUT, deadline, "send"));
        continue;
      }
      return Errno("send", errno);
    }
    size_t left = static_cast<size_t>(n);
    while (left > 0 && i < iov.size()) {
      const size_t take = std::min(left, iov[i].iov_len);
      iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + take;
      iov[i].iov_len -= take;
      left -= take;
      if (iov[i].iov_len == 0) ++i;
    }
  }
  return OkStatus();
}

Status WireRecvAll(int fd, void* dest, size_t n, Deadline deadline, size_t* got) {
  auto* p = static_cast<char*>(dest);
  size_t at = 0;
  Status st;
  while (at < n) {
    const ssize_t r = recv(fd, p + at, n - at, 0);
    if (r > 0) {
      at += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) {
      st = UnavailableError("mesh wire: the peer closed the connection");
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      st = WaitFd(fd, POLLIN, deadline, "receive");
      if (!st.ok()) break;
      continue;
    }
    st = Errno("receive", errno);
    break;
  }
  if (got != nullptr) *got += at;
  return st;
}

Status WireSendFrame(int fd, WireType type, std::string_view body, Deadline deadline) {
  auto h = EncodeWireHeader(type, static_cast<uint32_t>(body.size()));
  iovec iov[2] = {{h.data(), h.size()}, {const_cast<char*>(body.data()), body.size()}};
  return WireSendAll(fd, iov, deadline);
}

StatusOr<WireFrame> WireRecvFrame(int fd, Deadline deadline, size_t* got) {
  std::array<uint8_t, kWireHeaderSize> h{};
  TW_RETURN_IF_ERROR(WireRecvAll(fd, h.data(), h.size(), deadline, got));
  WireFrame f;
  TW_ASSIGN_OR_RETURN(f.header, DecodeWireHeader(h));
  f.body.resize(f.header.body);
  TW_RETURN_IF_ERROR(WireRecvAll(fd, f.body.data(), f.body.size(), deadline, got));
  return f;
}

}  // namespace tw::mesh::net
