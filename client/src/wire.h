// Conversions between libtwclient's value types (tw/client/types.h) and the protobuf
// messages of the wire, and the generic request helpers both clients use: Call() (a future)
// and CallSync() (the caller waits, reading its own reply). Private to the library. Pure
// functions except the helpers, which send.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "connection.h"
#include "tw/client/client.h"
#include "tw/protocol/messages.h"

namespace tw::client::wire {

namespace pb = ::tokenwarehouse::v1;

Tier FromProto(pb::Tier t);
MissReason FromProto(pb::MissReason r);
PutResult FromProto(pb::PutResult r);
pb::Durability ToProto(Durability d);
void ToProto(const ScatterRange& r, pb::ScatterEntry* out);
void ToProto(const KeyRef& r, pb::KeyRef* out);
std::string KeyBytes(const Key& k);
// REQUIRES nothing: a wrong length is an error naming `what`.
StatusOr<Key> KeyFromWire(const std::string& raw, std::string_view what);
Stats FromProto(const pb::StatsResponse& s);

// The Status a reply frame stands for when it is an error frame, else OK.
Status ErrorOf(const ReplyFrame& f);

// Sends `request` as `op`; `deliver` (a callable taking StatusOr<T>) receives
// `convert(Response)` (convert returns StatusOr<T>) or the error that ended the request, once,
// on whichever thread reads the reply (Connection). An error return means `deliver` never runs.
template <typename Response, typename T, typename Convert, typename Deliver>
Status Send(Connection& conn, protocol::Opcode op, const google::protobuf::MessageLite& request,
            Convert convert, Deliver deliver, int pass_fd = -1) {
  return conn.Send(
      op, protocol::FrameMessage(request),
      [deliver = std::move(deliver), convert = std::move(convert)](StatusOr<ReplyFrame> reply) {
        if (!reply.ok()) {
          deliver(StatusOr<T>(reply.status()));
          return;
        }
        Status err = ErrorOf(*reply);
        if (!err.ok()) {
          deliver(StatusOr<T>(err));
          return;
        }
        Response response;
        Status parsed = protocol::ParseBody(reply->body, &response);
        if (!parsed.ok()) {
          deliver(StatusOr<T>(parsed));
          return;
        }
        deliver(StatusOr<T>(convert(response)));
      },
      pass_fd);
}

// Sends `request` as `op` and returns a future of `convert(Response)` (see Send).
template <typename Response, typename T, typename Convert>
Future<T> Call(Connection& conn, protocol::Opcode op, const google::protobuf::MessageLite& request,
               Convert convert, int pass_fd = -1) {
  auto promise = std::make_shared<std::promise<StatusOr<T>>>();
  Future<T> future = promise->get_future();
  Status sent = Send<Response, T>(
      conn, op, request, std::move(convert),
      [promise](StatusOr<T> v) { promise->set_value(std::move(v)); }, pass_fd);
  if (!sent.ok()) promise->set_value(sent);
  return future;
}

// The answer of a synchronous call (CallSync), set by whoever reads its reply: on an idle
// connection the caller itself, inside Connection::WaitReady. It is not a std::promise on
// purpose: libstdc++ sets a promise under std::call_once, whose pthread_once makes a
// FUTEX_WAKE system call every time, waiter or not — one system call per request beyond its
// send and receive. Setting this takes an uncontended lock, and wakes only a caller that sleeps
// in Take() (another thread read the reply: the connection's reader, a pipelining caller).
// Threading: Set() from any thread, once; ready() and Take() from the caller.
template <typename T>
class SyncAnswer {
 public:
  void Set(StatusOr<T> v) {
    std::lock_guard<std::mutex> l(mu_);
    value_.emplace(std::move(v));
    ready_.store(true, std::memory_order_release);
    cv_.notify_one();  // no system call unless the caller sleeps in Take()
  }
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  // The answer, or DeadlineExceeded (as Await's) when none came by `deadline`.
  StatusOr<T> Take(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_until(l, deadline, [&] { return value_.has_value(); })) {
      return DeadlineExceededError("twd did not answer before the deadline");
    }
    return std::move(*value_);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<StatusOr<T>> value_;  // guarded by mu_
  std::atomic<bool> ready_{false};    // value_ is set
};

// Sends `request` as `op` and waits for `convert(Response)` (see Send) for up to `timeout`
// (+ kAwaitSlack, as Await). The calling thread reads the reply itself when no other thread
// reads the connection (Connection::WaitReady): on an idle connection a call is one send and
// one receive, with no other system call and no other thread involved.
template <typename Response, typename T, typename Convert>
StatusOr<T> CallSync(Connection& conn, protocol::Opcode op,
                     const google::protobuf::MessageLite& request, Convert convert,
                     std::chrono::milliseconds timeout, int pass_fd = -1) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Shared: the completion may run after a timed-out caller left.
  auto answer = std::make_shared<SyncAnswer<T>>();
  Connection::CallerReads caller_reads;  // the reader thread stays asleep: we read
  TW_RETURN_IF_ERROR((Send<Response, T>(
      conn, op, request, std::move(convert), [answer](StatusOr<T> v) { answer->Set(std::move(v)); },
      pass_fd)));
  conn.WaitReady([&answer] { return answer->ready(); }, deadline);
  return answer->Take(deadline + kAwaitSlack);
}

// Await(f, timeout), but the calling thread reads and completes replies itself while it
// waits when no other thread is reading (Connection::WaitReady).
template <typename T>
StatusOr<T> Wait(Connection& conn, Future<T>& f, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  conn.WaitReady([&f] { return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready; },
                 deadline);
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return Await(f, std::max(left, std::chrono::milliseconds(0)));
}

}  // namespace tw::client::wire
