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
  // Blocking from here on: the reader thread blocks in recv, writers in send.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return std::unique_ptr<Connection>(new Connection(fd, max_in_flight == 0 ? 64 : max_in_flight));
}

Connection::Connection(int fd, uint32_t max_in_flight) : fd_(fd), max_in_flight_(max_in_flight) {
  reader_ = std::thread([this] { ReadLoop(); });
}

Connection::~Connection() { Close(); }

void Connection::Close() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_) return;
    closed_ = true;
  }
  shutdown(fd_, SHUT_RDWR);  // wakes the reader
  if (reader_.joinable()) reader_.join();
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

Status Connection::Send(protocol::Opcode op, std::string_view body, Completion completion,
                        int pass_fd) {
  if (body.size() > protocol::kAbsoluteMaxBody) {
    return InvalidArgumentError(
        StrCat("request of ", body.size(), " bytes exceeds the protocol's frame limit"));
  }
  uint64_t id;
  {
    std::unique_lock<std::mutex> l(mu_);
    room_cv_.wait(l, [&] { return closed_ || !failed_.ok() || pending_.size() < max_in_flight_; });
    if (closed_) return CancelledError("the client connection was closed");
    if (!failed_.ok()) return failed_;
    id = next_id_++;
    pending_.emplace(id, std::move(completion));
  }
  protocol::FrameHeader h;
  h.opcode = op;
  h.request_id = id;
  Status s = WriteAll(protocol::EncodeFrame(h, body), pass_fd);
  if (!s.ok()) {
    std::lock_guard<std::mutex> l(mu_);
    // The reader may have failed it already; only one side completes.
    if (pending_.erase(id) == 0) return OkStatus();
    room_cv_.notify_one();
    return s;
  }
  return OkStatus();
}

Status Connection::WriteAll(const std::string& frame, int pass_fd) {
  std::lock_guard<std::mutex> l(write_mu_);
  Status s = protocol::SendWithFd(fd_, frame, pass_fd);
  return s.ok() ? s : s.WithPrefix("send to twd");
}

void Connection::ReadLoop() {
  std::vector<uint8_t> buf(1 << 16);
  size_t have = 0;
  DecodeLimits limits;
  limits.max_body = protocol::kAbsoluteMaxBody;
  limits.expect_response = true;
  Status end;
  std::string fatal_message;
  while (true) {
    if (have == buf.size()) buf.resize(buf.size() * 2);
    ssize_t n = recv(fd_, buf.data() + have, buf.size() - have, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      end = n == 0 ? UnavailableError(fatal_message.empty()
                                          ? std::string("twd closed the connection")
                                          : StrCat("twd closed the connection: ", fatal_message))
                   : ErrnoStatus(errno, "receive from twd");
      break;
    }
    have += static_cast<size_t>(n);
    size_t off = 0;
    bool bad = false;
    while (true) {
      auto d = DecodeFrame(std::span<const uint8_t>(buf.data() + off, have - off), limits);
      if (d.state == DecodeState::kNeedMore) break;
      if (d.state == DecodeState::kError) {
        end = InternalError(StrCat("malformed frame from twd: ", d.error.message()));
        bad = true;
        break;
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
            if (reply.ParseFromString(f.body)) fatal_message = reply.message();
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
    if (bad) break;
    std::memmove(buf.data(), buf.data() + off, have - off);
    have -= off;
  }
  bool closing;
  {
    std::lock_guard<std::mutex> l(mu_);
    closing = closed_;
    if (failed_.ok()) failed_ = end;
  }
  FailAll(closing ? CancelledError("the client connection was closed") : end);
}

void Connection::FailAll(const Status& status) {
  std::unordered_map<uint64_t, Completion> failed;
  {
    std::lock_guard<std::mutex> l(mu_);
    failed.swap(pending_);
    room_cv_.notify_all();
  }
  for (auto& [id, done] : failed) done(status);
}

}  // namespace tw::client
