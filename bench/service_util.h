// What the benchmarks that drive twd share (service_bench.cc, mesh_bench.cc): timing and
// percentiles, the Reporter that prints figures with their targets, a child process (twd),
// and chains of chunks put and got through libtwclient.
//
// Threading: a Reporter or Child belongs to one thread; the chain functions run on the calling
// thread over the given Client (itself thread-safe). Lifetime: a Child stops its process
// (SIGTERM, then waits) when destroyed, and the process is sent SIGKILL if this one dies first.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "report.h"
#include "tw/client/client.h"
#include "tw/common/keys.h"
#include "tw/common/status.h"

namespace tw::bench {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b);
double Gbps(uint64_t bytes, double s);
// The p-quantile (p in 0..1) of `v`; 0 when empty.
double Percentile(std::vector<double> v, double p);

// Collects the figures (printed by report.h's Print, as the engine benchmark does) and the
// issue's targets, which are checked and printed after the table.
class Reporter {
 public:
  void Figure(const std::string& name, double value, const std::string& unit);
  // `value` against `reference`, the ratio printed, no target.
  void Versus(const std::string& name, double value, const std::string& unit, double reference);
  // `value` against `reference`; the target is on value / reference (at least `target`, or
  // at most when `lower_is_better`).
  void Compare(const std::string& name, double value, const std::string& unit, double reference,
               double target, bool lower_is_better);
  void Print(bool json) const;

 private:
  struct Target {
    std::string name;
    double ratio;
    double target;
    bool lower_is_better;
  };
  std::vector<Result> results_;
  std::vector<Target> targets_;
};

// A figure and its reference measured back to back.
struct Alternated {
  double value = 0;
  double reference = 0;
  double ratio() const { return reference > 0 ? value / reference : 0; }
};

// Reports each run (`NAME_run_I` with its own reference, in GB/s) and the run of median ratio
// as NAME against `target` (at least).
void ReportMedian(Reporter& out, const std::string& name, std::vector<Alternated> runs,
                  double target);

// A child process (twd, redis-server, or `ip netns exec NS twd …`), its output appended to a
// log file.
class Child {
 public:
  // Starts argv (argv[0] a path) and waits up to 30 s for `wait_for_path` to exist.
  Status Start(std::vector<std::string> argv, const std::string& wait_for_path,
               const std::string& log_path);
  pid_t pid() const { return pid_; }
  // SIGTERM and wait (nothing when not running).
  void Stop();
  ~Child() { Stop(); }

 private:
  pid_t pid_ = -1;
};

Namespace BenchNamespace(const std::string& name, uint32_t chunk_tokens);

// A chain of `n` chunks under `ns` (token ids offset by `salt`, so chains differ).
struct Chain {
  Key digest;
  std::vector<Key> keys;
  std::vector<std::vector<uint32_t>> tokens;
};
Chain MakeChain(const Namespace& ns, size_t n, uint32_t salt);

// Puts every chunk of `chain` (value `size` bytes from arena slot i % depth), `depth` in
// flight. Returns seconds, or an error.
StatusOr<double> PutChain(client::Client& c, const Chain& chain, uint64_t size, int depth,
                          client::Durability durability);

struct GetStats {
  double seconds = 0;
  uint64_t bytes = 0;
  uint64_t dram = 0, nvme = 0, peer = 0, misses = 0;
  std::string last_miss;  // reason (or error) of the last miss
};

// Gets chunks of `chain` `passes` times, `depth` in flight into arena slots.
GetStats GetChain(client::Client& c, const Chain& chain, uint64_t size, int depth, int passes);

StatusOr<std::unique_ptr<client::Client>> Connect(const std::string& sock, uint64_t arena,
                                                  std::vector<Namespace> ns);

}  // namespace tw::bench
