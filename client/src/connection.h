// tw::client::Connection — one Unix-socket connection to twd speaking the framed protocol
// (docs/protocol.md): requests are written whole under a write lock, a reader thread decodes
// reply frames and completes the pending request with the same id, in whatever order twd
// answers. Streamed replies (admin export) call the completion once per frame.
//
// Threading: Send() may be called from any thread; completions run on the reader thread and
// must not block on this connection. Close() (or the destructor) fails every pending request
// with kCancelled (or kUnavailable if twd went away first), joins the reader and closes the
// socket. At most `max_in_flight` requests are pending: Send() waits for room.
//
// Lifetime: Connect() → Send()... → Close(). Completions never run after Close() returns.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "tw/common/status.h"
#include "tw/protocol/frame.h"

namespace tw::client {

// A reply frame: header fields and the body bytes.
struct ReplyFrame {
  protocol::Opcode opcode = protocol::Opcode::kInvalid;
  uint32_t flags = 0;
  std::string body;
  bool more() const { return (flags & protocol::kFlagMore) != 0; }
  bool error() const { return (flags & protocol::kFlagError) != 0; }
};

class Connection {
 public:
  // Called with each reply frame (or the error that ended the request). Called again only
  // while frames carry the MORE flag.
  using Completion = std::function<void(StatusOr<ReplyFrame>)>;

  // Connects to `socket_path` within `timeout`.
  static StatusOr<std::unique_ptr<Connection>> Connect(const std::string& socket_path,
                                                       std::chrono::milliseconds timeout,
                                                       uint32_t max_in_flight);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends one request frame (and `pass_fd` as SCM_RIGHTS when >= 0). `completion` runs on
  // the reader thread. An error return means the completion will never run.
  Status Send(protocol::Opcode op, std::string_view body, Completion completion, int pass_fd = -1);
  // Stops the connection: pending requests fail with kCancelled. Idempotent.
  void Close();
  // Sets the in-flight cap (after hello, twd announces its own).
  void SetMaxInFlight(uint32_t n);
  // False once the connection failed or was closed.
  bool alive() const;

 private:
  Connection(int fd, uint32_t max_in_flight);
  void ReadLoop();
  void FailAll(const Status& status);
  Status WriteAll(const std::string& frame, int pass_fd);

  int fd_;
  std::thread reader_;
  std::mutex write_mu_;  // serialises whole frames on the socket

  mutable std::mutex mu_;
  std::condition_variable room_cv_;
  uint64_t next_id_ = 1;                              // guarded by mu_
  std::unordered_map<uint64_t, Completion> pending_;  // guarded by mu_
  uint32_t max_in_flight_;                            // guarded by mu_
  Status failed_;                                     // guarded by mu_: why it stopped
  bool closed_ = false;                               // guarded by mu_
};

}  // namespace tw::client
