// Server: twd's Unix-socket front end. One reactor thread (epoll, edge-triggered) accepts
// connections on the client and admin sockets, reads and decodes frames, answers HELLO and
// the requests that only touch memory (PING, LOOKUP: SocketCodec::CanRunInline) inline and
// hands every other request to a WorkerPool that runs it through the SocketCodec (protobuf ↔
// domain) against the ServiceCore; workers write replies
// themselves (non-blocking) and leave the rest to the reactor, which watches a socket for
// writability only while replies wait for space. After HELLO a worker populates the page
// tables of the client's arena, so that copies into it take no page faults.
//
// Protection against hostile clients: a frame error is answered once and the connection is
// closed; a connection at its in-flight cap, or with more than kPauseOutputBytes of unsent
// replies, is not read until it drains; one with more than kMaxOutputBytes unsent (a client
// that never reads) is closed. No client can block the reactor or another client.
//
// Threading: Start/Stop from one controlling thread. Lifetime: Stop() (or the destructor)
// stops accepting, lets in-flight requests finish within the grace period, closes every
// connection and joins all threads. The ServiceCore must outlive the Server.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "service_core.h"
#include "tw/common/status.h"

namespace tw::twd {

struct ServerOptions {
  std::string socket_path;  // client socket
  uint32_t socket_mode = 0660;
  std::string socket_group;       // "" = keep
  std::string admin_socket_path;  // "" = no admin socket
  size_t workers = 0;             // 0 = hardware threads, clamped to [4, 32] (config: workers)
  std::chrono::milliseconds tick = std::chrono::seconds(1);  // ServiceCore::Tick period
};

class Server {
 public:
  static constexpr size_t kPauseOutputBytes = size_t{8} << 20;
  static constexpr size_t kMaxOutputBytes = size_t{64} << 20;

  static StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options, ServiceCore* core);
  ~Server();

  // Stops accepting and reading, waits up to `grace` for in-flight requests, then closes
  // every connection. Idempotent.
  void Stop(std::chrono::nanoseconds grace);

  // Open connections (client and admin).
  size_t connections() const;
  // Requests read but not yet answered.
  uint64_t inflight() const;

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tw::twd
