// The socket references of `tw-bench service` and where the two ends of a latency figure run.
//
// A wake-up on the CPU that is going to sleep costs a context switch; one on another CPU an
// inter-processor interrupt, several times dearer on virtual CPUs; and the scheduler picks
// either from one run to the next. So the ping-pong reference and twd's latencies are measured
// in the same Placement: the load on one CPU, the far end (the echo process, every thread of
// twd) on the others — twd as deployed, a sidecar with CPUs of its own. With a single CPU
// nothing is pinned.
//
// Threading: the functions fork their far end and run on the calling thread; a Placement is
// immutable after construction. Nothing outlives a call but the returned figures.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <cstdint>
#include <vector>

namespace tw::bench {

class Placement {
 public:
  // Splits the CPUs this process may use into one near CPU and the far rest (when `pin` and
  // there are at least two).
  explicit Placement(bool pin);
  bool pinned() const { return pinned_; }
  // The calling thread: onto the near CPU, and back.
  void PinSelf() const { Set(0, near_); }
  void UnpinSelf() const { Set(0, all_); }
  // The calling thread (a forked far end) onto the far CPUs.
  void PinSelfFar() const { Set(0, far_); }
  // Every thread of process `pid`: onto the far CPUs, and back.
  void PinFar(pid_t pid) const { ForEachThread(pid, far_); }
  void Unpin(pid_t pid) const { ForEachThread(pid, all_); }
  // CPUs on the far side (0 when not pinned).
  int far_cpus() const { return pinned_ ? CPU_COUNT(&far_) : 0; }

 private:
  void Set(pid_t tid, const cpu_set_t& set) const;
  void ForEachThread(pid_t pid, const cpu_set_t& set) const;
  cpu_set_t all_, near_, far_;
  bool pinned_ = false;
};

// CPU time (user and system) that every thread of process `pid` (0: this process) has run,
// in ns, from /proc/PID/task/*/schedstat; 0 when unreadable. Differences of it say what a
// request costs in CPU on each side, which a loaded machine inflates far less than latency.
uint64_t ProcessCpuNs(pid_t pid);

// A forked writer streams `passes` × `chunk` bytes over a socketpair, read here; GB/s.
double SocketStreamGbps(uint64_t chunk, int passes);

// Round trips of a 64-byte message with a forked echo process placed by `where`.
struct PingPong {
  std::vector<double> latency_us;  // of each round trip
  double cpu_near_us = 0;          // CPU per round trip of this process
  double cpu_far_us = 0;           // and of the echo process
};
PingPong PingPongUs(int rounds, const Placement& where);

}  // namespace tw::bench
