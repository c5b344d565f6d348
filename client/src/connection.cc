#include "connection.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "tokenwarehouse/v1/client.pb.h"
#include "tw/common/strings.h"
#include "tw/protocol/fd_passing.h"
#include "tw/protocol/messages.h"

namespace tw::client {

using protocol::DecodeFrame;
using protocol::DecodeLimits;
using protocol::DecodeState;

StatusOr<std::unique_ptr<Connection>> Connection::Connect(const std::string& socket_path,
                                                          std::chrono::milliseconds timeout,
                                                          uint32_t max_in_flight) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgumentError(StrCat("socket path \"", socket_path, "\" is empty or longer than ",
                                       sizeof(addr.sun_path) - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket(AF_UNIX)");
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) {
      Status s = ErrnoStatus(errno, StrCat("connect to ", socket_path));
      close(fd);
      return s;
    }
    pollfd p{fd, POLLOUT, 0};
    int r = poll(&p, 1, static_cast<int>(timeout.count()));
    int err = 0;
    socklen_t len = sizeof err;
    if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      Status s = r == 0 ? DeadlineExceededError(StrCat("connect to ", socket_path, ": timed out"))
                        : ErrnoStatus(err != 0 ? err : errno, StrCat("connect to ", socket_path));
      close(fd);
      return s;
    }
  }
  // Blocking from here on: the reader thread blocks in recv, writers in send. A blocking
  // recv returns after kReadSlice at the latest, so a caller waiting for its reply checks its
  // deadline that often without a poll() before every recv (one system call per reply).
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  const timeval slice{0, static_cast<suseconds_t>(kReadSlice.count())};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &slice, sizeof slice);
  return std::unique_ptr<Connection>(new Connection(fd, max_in_flight == 0 ? 64 : max_in_flight));
}

namespace {
thread_local int caller_reads = 0;  // live Connection::CallerReads on this thread
}  // namespace

Connection::CallerReads::CallerReads() { Begin(); }
Connection::CallerReads::~CallerReads() { End(); }
void Connection::CallerReads::Begin() { ++caller_reads; }
void Connection::CallerReads::End() { --caller_reads; }

Connection::Connection(int fd, uint32_t max_in_flight)
    : fd_(fd), buf_(1 << 16), max_in_flight_(max_in_flight) {
  reader_ = std::thread([this] { ReadLoop(); });
}

Connection::~Connection() { Close(); }

void Connection::Close() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_) return;
    closed_ = true;
    reader_cv_.notify_all();
  }
  shutdown(fd_, SHUT_RDWR);  // wakes whoever reads
  if (reader_.joinable()) reader_.join();
  {
    // A caller reading in WaitReady() sees the shutdown at once and leaves.
    std::unique_lock<std::mutex> l(mu_);
    role_cv_.wait(l, [&] { return !caller_reading_; });
  }
  FailAll(CancelledError("the client connection was closed"));
  close(fd_);
  fd_ = -1;
}

void Connection::SetMaxInFlight(uint32_t n) {
  if (n == 0) return;
  std::lock_guard<std::mutex> l(mu_);
  max_in_flight_ = std::min(max_in_flight_, n);
}

bool Connection::alive() const {
  std::lock_guard<std::mutex> l(mu_);
  return !closed_ && failed_.ok();
}

bool Connection::TakeReadRole() {
  std::lock_guard<std::mutex> l(mu_);
  if (closed_ || !failed_.ok() || reading_) return false;
  reading_ = true;
  caller_reading_ = true;
  return true;
}

void Connection::ReleaseReadRole() {
  std::lock_guard<std::mutex> l(mu_);
  reading_ = false;
  caller_reading_ = false;
  role_cv_.notify_all();
  // Replies still owed to others: the reader thread takes over.
  if (!pending_.empty()) reader_cv_.notify_one();
}

Status Connection::Send(protocol::Opcode op, std::string frame, Completion completion,
                        int pass_fd) {
  if (frame.size() < protocol::kHeaderSize) {
    return InvalidArgumentError("request frame without room for its header");
  }
  const size_t body = frame.size() - protocol::kHeaderSize;
  if (body > protocol::kAbsoluteMaxBody) {
    return InvalidArgumentError(
        StrCat("request of ", body, " bytes exceeds the protocol's frame limit"));
  }
  uint64_t id;
  {
    std::unique_lock<std::mutex> l(mu_);
    room_cv_.wait(l, [&] { return closed_ || !failed_.ok() || pending_.size() < max_in_flight_; });
    if (closed_) return CancelledError("the client connection was closed");
    if (!failed_.ok()) return failed_;
    id = next_id_++;
    pending_.emplace(id, std::move(completion));
    if (!reading_ && caller_reads == 0) reader_cv_.notify_one();
  }
  protocol::FrameHeader h;
  h.opcode = op;
  h.request_id = id;
  protocol::SetFrameHeader(h, &frame);
  Status s = WriteAll(frame, pass_fd);
  if (!s.ok() && TakeReadRole()) {
    // twd went away (EPIPE). What it sent before closing (an error saying why, the hang-up)
    // is still to be read: read it, so that the failure carries its reason.
    while (ReadOnce(/*wait=*/false) == ReadResult::kRead) {
    }
    ReleaseReadRole();
    std::lock_guard<std::mutex> l(mu_);
    if (!failed_.ok()) s = failed_;
  }
  if (!s.ok()) {
    std::lock_guard<std::mutex> l(mu_);
    // The reader may have failed it already; only one side completes.
    if (pending_.erase(id) == 0) return OkStatus();
    room_cv_.notify_one();
    return s;
  }
  return OkStatus();
}

void Connection::WaitReady(const std::function<bool()>& ready,
                           std::chrono::steady_clock::time_point deadline) {
  if (ready() || !TakeReadRole()) return;
  // Each wait lasts kReadSlice at most, so the deadline is overshot by no more than that.
  while (!ready() && std::chrono::steady_clock::now() < deadline) {
    if (ReadOnce(/*wait=*/true) == ReadResult::kEnded) break;
  }
  ReleaseReadRole();
}

Status Connection::WriteAll(const std::string& frame, int pass_fd) {
  std::lock_guard<std::mutex> l(write_mu_);
  Status s = protocol::SendWithFd(fd_, frame, pass_fd);
  return s.ok() ? s : s.WithPrefix("send to twd");
}

void Connection::ReadLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      reader_cv_.wait(l,
                      [&] { return closed_ || !failed_.ok() || (!reading_ && !pending_.empty()); });
      if (closed_ || !failed_.ok()) return;
      reading_ = true;
    }
    bool ended = false;
    for (;;) {
      if (ReadOnce(/*wait=*/true) == ReadResult::kEnded) {
        ended = true;
        break;
      }
      std::lock_guard<std::mutex> l(mu_);
      if (pending_.empty() || closed_) break;
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      reading_ = false;
      role_cv_.notify_all();
    }
    if (ended) return;
  }
}

Connection::ReadResult Connection::ReadOnce(bool wait) {
  if (have_ == buf_.size()) buf_.resize(buf_.size() * 2);
  ssize_t n = recv(fd_, buf_.data() + have_, buf_.size() - have_, wait ? 0 : MSG_DONTWAIT);
  if (n < 0 && errno == EINTR) return ReadResult::kNoData;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return ReadResult::kNoData;
  if (n <= 0) {
    End(n == 0 ? UnavailableError(fatal_message_.empty()
                                      ? std::string("twd closed the connection")
                                      : StrCat("twd closed the connection: ", fatal_message_))
               : ErrnoStatus(errno, "receive from twd"));
    return ReadResult::kEnded;
  }
  have_ += static_cast<size_t>(n);
  DecodeLimits limits;
  limits.max_body = protocol::kAbsoluteMaxBody;
  limits.expect_response = true;
  size_t off = 0;
  while (true) {
    auto d = DecodeFrame(std::span<const uint8_t>(buf_.data() + off, have_ - off), limits);
    if (d.state == DecodeState::kNeedMore) break;
    if (d.state == DecodeState::kError) {
      End(InternalError(StrCat("malformed frame from twd: ", d.error.message())));
      return ReadResult::kEnded;
    }
    ReplyFrame f;
    f.opcode = d.header.opcode;
    f.flags = d.header.flags;
    f.body.assign(d.body);
    off += d.consumed;
    Completion done;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = pending_.find(d.header.request_id);
      if (it == pending_.end()) {
        // A request we gave up on (send failed), or a connection-level error (id 0): keep
        // its message, it explains why twd is about to close.
        if (f.error()) {
          tokenwarehouse::v1::ErrorReply reply;
          if (reply.ParseFromString(f.body)) fatal_message_ = reply.message();
        }
        continue;
      }
      if (f.more()) {
        done = it->second;  // streamed: keep the entry
      } else {
        done = std::move(it->second);
        pending_.erase(it);
        room_cv_.notify_one();
      }
    }
    done(std::move(f));
  }
  std::memmove(buf_.data(), buf_.data() + off, have_ - off);
  have_ -= off;
  return ReadResult::kRead;
}

void Connection::End(const Status& status) {
  bool closing;
  {
    std::lock_guard<std::mutex> l(mu_);
    closing = closed_;
    if (failed_.ok()) failed_ = status;
  }
  FailAll(closing ? CancelledError("the client connection was closed") : status);
}

void Connection::FailAll(const Status& status) {
  std::unordered_map<uint64_t, Completion> failed;
  {
    std::lock_guard<std::mutex> l(mu_);
    failed.swap(pending_);
    room_cv_.notify_all();
    reader_cv_.notify_all();
  }
  for (auto& [id, done] : failed) done(status);
}

}  // namespace tw::client
