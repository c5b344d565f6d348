// SocketCodec: the Unix-socket front of twd's service core. It turns a decoded request frame
// (a protobuf message that tw::protocol::ParseRequest checked structurally) into the core's
// domain request (core_types.h), calls ServiceCore, and encodes the result as reply frames.
// It is the only part of twd's request path that knows the generated protobuf types; the
// Server (server.h) owns one and handles sockets, framing and threads around it.
//
// Threading: thread-safe (it holds no state of its own beyond the core pointer). Lifetime:
// the core must outlive the codec.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "service_core.h"
#include "session.h"
#include "tw/common/status.h"
#include "tw/protocol/fd_passing.h"
#include "tw/protocol/frame.h"
#include "tw/protocol/messages.h"

namespace tw::twd {

namespace pb = ::tokenwarehouse::v1;

class SocketCodec {
 public:
  explicit SocketCodec(ServiceCore* core) : core_(core) {}

  ServiceCore& core() { return *core_; }

  // Structural limits for a session's requests (ParseRequest).
  protocol::MessageLimits Limits(const Session& session) const;

  // HELLO: `fds` holds what came with the frame (none, or exactly one memfd). Errors are
  // fatal to the connection.
  StatusOr<pb::HelloResponse> Hello(Session& session, const pb::HelloRequest& request,
                                    std::vector<protocol::UniqueFd> fds);

  // Sends one frame of a streamed reply before the request is done; false when the
  // connection is gone (the request then stops early).
  using Emit = std::function<bool(std::string frame)>;

  // Runs one request (not HELLO) and returns the reply frames. A streamed reply (export)
  // hands all frames but the last to `emit` as they fill, when given; without it they are
  // all returned. A request that fails as a whole becomes an error frame. Every admin
  // operation (and every one tried on the client socket) writes an audit line (log::Audit).
  std::vector<std::string> Handle(Session& session, const protocol::FrameHeader& header,
                                  const google::protobuf::MessageLite& request,
                                  Clock::time_point received, const Emit& emit = nullptr);

  // Most keys (over all chains) of a lookup answered on the reactor.
  static constexpr size_t kInlineLookupKeys = 4096;

  // True for requests that touch only memory and are small — PING, and LOOKUP (with or
  // without leases and tenants) of at most kInlineLookupKeys keys — so the Server may run
  // them on its reactor thread instead of handing them to a worker.
  bool CanRunInline(protocol::Opcode op, const google::protobuf::MessageLite& request) const;

  // Called on the reactor thread when a PUT is read, before it is queued, and by the worker
  // when it is done (ServiceCore::OnPutQueued/OnPutDone).
  void OnPutQueued(const pb::PutRequest& request);
  void OnPutDone(const pb::PutRequest& request);

 private:
  // Counts the chunks it exported into `*exported`.
  std::vector<std::string> Export(uint64_t request_id, const pb::ExportRequest& r, const Emit& emit,
                                  uint64_t* exported);

  ServiceCore* const core_;
};

}  // namespace tw::twd
