// Two network namespaces joined by a veth pair, for `tw-bench mesh`, and the TCP references
// measured between them: a raw stream (each end a thread of this process entered into its
// namespace with setns) and a ping-pong (a forked echo process on a's side), so that the
// references cross the same veth as twd's mesh.
//
//   a: `twbench<pid>-a`, eth0 10.88.0.1/24      b: `twbench<pid>-b`, eth0 10.88.0.2/24
//
// Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2's `ip`. Create() first deletes the
// namespaces of earlier runs whose process is gone; the destructor deletes this run's (which
// removes the veth pair); SIGINT and SIGTERM delete them too before exiting.
//
// Threading: create and destroy on one thread; the reference functions start their own
// threads and join them before returning. Lifetime: one NetnsPair per process at a time.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tw/common/status.h"

namespace tw::bench {

class NetnsPair {
 public:
  static StatusOr<std::unique_ptr<NetnsPair>> Create();
  ~NetnsPair();
  NetnsPair(const NetnsPair&) = delete;
  NetnsPair& operator=(const NetnsPair&) = delete;

  // Namespace names and eth0 addresses of the two ends (0: a, 1: b).
  const std::string& name(int end) const { return names_[end]; }
  const std::string& address(int end) const { return addresses_[end]; }
  // argv prefixed to run a program inside end's namespace: {"ip", "netns", "exec", NAME}.
  std::vector<std::string> ExecPrefix(int end) const;
  // Runs fn on a new thread entered into end's namespace; waits for it.
  Status RunIn(int end, const std::function<void()>& fn) const;
  // Starts fn on a new thread entered into end's namespace (the caller joins it).
  StatusOr<std::thread> StartIn(int end, std::function<void()> fn) const;

 private:
  NetnsPair() = default;
  std::string names_[2];
  std::string addresses_[2];
};

// `count` sends of `chunk` bytes from a pre-faulted buffer, a → b over one TCP connection,
// received into a pre-faulted buffer on b; GB/s from the connect to the last byte received.
StatusOr<double> TcpStreamGbps(const NetnsPair& net, uint64_t chunk, int count);

// Round trips of a 64-byte message b → a → b over one TCP connection (TCP_NODELAY), µs each;
// the echo end on a is a forked process (as twd is), the measuring end a thread in b.
StatusOr<std::vector<double>> TcpPingPongUs(const NetnsPair& net, int rounds);

}  // namespace tw::bench
