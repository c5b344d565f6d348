// tw::client::Connection — one Unix-socket connection to twd speaking the framed protocol
// (docs/protocol.md): requests are written whole under a write lock; whoever holds the read
// role decodes reply frames and completes the pending request with the same id, in whatever
// order twd answers. Streamed replies (admin export) call the completion once per frame.
//
// The read role: at most one thread reads the socket at a time. A reader thread takes it
// while requests are pending and nobody else reads; a caller blocked on its own reply takes
// it through WaitReady() when it is free, and then reads the socket itself — saving the
// hand-off from the reader thread to the caller, which costs more than twd's whole answer
// to a small request. Whoever reads completes every request whose reply it reads. While
// nothing is pending the reader thread sleeps; when a Send() then fails because twd went
// away, it reads what twd sent before closing (a connection-level error, the hang-up), so
// the failure carries its reason.
//
// Threading: Send() and WaitReady() may be called from any thread; completions run on the
// reader thread or on a thread inside WaitReady(), and must not block on this connection.
// Close() (or the destructor) fails every pending request with kCancelled (or kUnavailable
// if twd went away first), waits for a reading caller to leave, joins the reader and closes
// the socket. At most `max_in_flight` requests are pending: Send() waits for room.
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
#include <vector>

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

  // Sends one request frame (and `pass_fd` as SCM_RIGHTS when >= 0). `frame` is the body
  // after kHeaderSize bytes of room (protocol::FrameMessage); the header is written into
  // that room here, so the body is never copied. `completion` runs on the reader thread, or
  // on a thread in WaitReady(). An error return means the completion will never run.
  Status Send(protocol::Opcode op, std::string frame, Completion completion, int pass_fd = -1);
  // While one lives on a thread, a Send() from that thread does not wake the reader thread:
  // the caller is about to read its reply itself in WaitReady() (waking the reader would
  // only make it race the caller for the socket).
  class CallerReads {
   public:
    CallerReads();
    ~CallerReads();
    CallerReads(const CallerReads&) = delete;
    CallerReads& operator=(const CallerReads&) = delete;
    // What the constructor and destructor do, for wrappers that cannot hold one.
    static void Begin();
    static void End();
  };

  // Returns once `ready()` (which must become true when a completion runs) or at `deadline`.
  // When no other thread reads, the caller reads and completes replies itself meanwhile;
  // otherwise it returns at once (the caller then waits on its future as usual).
  void WaitReady(const std::function<bool()>& ready,
                 std::chrono::steady_clock::time_point deadline);
  // Stops the connection: pending requests fail with kCancelled. Idempotent.
  void Close();
  // Sets the in-flight cap (after hello, twd announces its own).
  void SetMaxInFlight(uint32_t n);
  // False once the connection failed or was closed.
  bool alive() const;

 private:
  // What one ReadOnce() did.
  enum class ReadResult {
    kRead,    // read bytes (and completed the requests whose replies were whole)
    kNoData,  // nothing arrived within the timeout
    kEnded,   // the connection ended: every pending request was failed
  };

  // The longest a blocking recv waits before its caller looks at the clock again.
  static constexpr std::chrono::microseconds kReadSlice{10000};

  Connection(int fd, uint32_t max_in_flight);
  void ReadLoop();
  // One recv. REQUIRES: the caller holds the read role. With `wait`, it waits for bytes for
  // up to kReadSlice (the socket's receive timeout); without, it does not wait.
  ReadResult ReadOnce(bool wait);
  // Records why the connection ended and fails every pending request.
  void End(const Status& status);
  // A calling thread (Send's drain, WaitReady) takes the read role if it is free; false when
  // another thread reads (or the connection is over). Close() waits for its release.
  bool TakeReadRole();
  void ReleaseReadRole();
  void FailAll(const Status& status);
  Status WriteAll(const std::string& frame, int pass_fd);

  int fd_;
  std::thread reader_;
  std::mutex write_mu_;  // serialises whole frames on the socket

  // Read state: touched only by the thread holding the read role.
  std::vector<uint8_t> buf_;
  size_t have_ = 0;
  std::string fatal_message_;  // a connection-level error twd sent before closing

  mutable std::mutex mu_;
  std::condition_variable room_cv_;
  uint64_t next_id_ = 1;                              // guarded by mu_
  std::unordered_map<uint64_t, Completion> pending_;  // guarded by mu_
  uint32_t max_in_flight_;                            // guarded by mu_
  Status failed_;                                     // guarded by mu_: why it stopped
  bool closed_ = false;                               // guarded by mu_
  bool reading_ = false;                              // guarded by mu_: read role held
  bool caller_reading_ = false;                       // guarded by mu_: held by a caller
  std::condition_variable reader_cv_;                 // the reader thread waits for work
  std::condition_variable role_cv_;                   // Close() waits for a reading caller to leave
};

}  // namespace tw::client
