// Conversions between libtwclient's value types (tw/client/types.h) and the protobuf
// messages of the wire, and the one generic request helper both clients use. Private to
// the library. Pure functions except Call(), which only sends.
#pragma once

#include <algorithm>
#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "connection.h"
#include "tw/client/client.h"
#include "tw/protocol/messages.h"
#include "tw/protocol/wire_enums.h"

namespace tw::client::wire {

namespace pb = ::tokenwarehouse::v1;

// The enums (Tier, MissReason, PutResult, Durability) convert through the one mapping
// twd uses too.
using protocol::FromProto;
using protocol::ToProto;
void ToProto(const ScatterRange& r, pb::ScatterEntry* out);
void ToProto(const KeyRef& r, pb::KeyRef* out);
std::string KeyBytes(const Key& k);
// REQUIRES nothing: a wrong length is an error naming `what`.
StatusOr<Key> KeyFromWire(const std::string& raw, std::string_view what);
Stats FromProto(const pb::StatsResponse& s);

// The Status a reply frame stands for when it is an error frame, else OK.
Status ErrorOf(const ReplyFrame& f);

// Sends `request` as `op` and returns a future of `convert(Response)`. `convert` returns
// StatusOr<T>; it runs on whichever thread reads the reply (Connection).
template <typename Response, typename T, typename Convert>
Future<T> Call(Connection& conn, protocol::Opcode op, const google::protobuf::MessageLite& request,
               Convert convert, int pass_fd = -1) {
  auto promise = std::make_shared<std::promise<StatusOr<T>>>();
  Future<T> future = promise->get_future();
  Status sent = conn.Send(
      op, protocol::FrameMessage(request),
      [promise, convert = std::move(convert)](StatusOr<ReplyFrame> reply) {
        if (!reply.ok()) {
          promise->set_value(reply.status());
          return;
        }
        Status err = ErrorOf(*reply);
        if (!err.ok()) {
          promise->set_value(err);
          return;
        }
        Response response;
        Status parsed = protocol::ParseBody(reply->body, &response);
        if (!parsed.ok()) {
          promise->set_value(parsed);
          return;
        }
        promise->set_value(convert(response));
      },
      pass_fd);
  if (!sent.ok()) promise->set_value(sent);
  return future;
}

// Await(f, timeout), but the calling thread reads and completes replies itself while it
// waits when no other thread is reading (Connection::WaitReady): a synchronous call then
// costs no hand-off from the connection's reader thread.
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
