// Harness: the torture program's control of one scenario's world — a twd process (the real
// `twd` or `torture_twd` with device hooks) on a store in a scenario directory, the client
// processes (the same executable re-run with --worker), and the checks: every chunk a client
// logged as acknowledged `disk` is read back byte for byte, twd's fds, threads, RSS and live
// leases after clients leave.
//
// Threading: one thread (the program's main). Lifetime: one Harness per scenario; the
// destructor kills what is still running and removes the directory unless kept.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tw/common/status.h"
#include "workload.h"

namespace tw::torture {

struct HarnessOptions {
  std::string self;      // this executable (workers re-run it)
  std::string twd;       // twd binary
  std::string dir;       // scenario directory (created)
  std::string data_dir;  // "" = <dir>/data
  uint64_t nvme_capacity = uint64_t{2} << 30;
  uint64_t dram_capacity = uint64_t{16} << 20;
  std::vector<std::string> twd_env;  // extra environment of twd (hooks)
  uint64_t seed = 1;
  uint32_t clients = 16;
  uint32_t recovery_bound_ms = 30000;
  uint32_t chains = 6;               // chains per client and rank (the working set)
  uint32_t short_deadline_pct = 15;  // gets with a deadline of a few ms
};

// What a scenario adds to the table.
struct Tally {
  uint64_t cycles = 0;
  uint64_t ops = 0;
  uint64_t chunks_verified = 0;
  uint64_t lost = 0;
  uint64_t wrong = 0;
  uint64_t rot_misses = 0;  // acknowledged chunks missing (corrupt/absent) after injected rot
  std::map<std::string, uint64_t> rot_reasons;  // their miss reasons
  std::vector<double> recovery_ms;
  std::vector<std::string> failures;  // invariant violations, one line each
  std::vector<std::string> notes;
};

// twd's resource use, from /proc.
struct ProcUse {
  uint64_t rss_kib = 0;
  uint64_t anon_kib = 0;  // RssAnon: twd's own memory (RSS also counts client arenas it maps)
  uint64_t fds = 0;       // open descriptors but io_uring rings
  uint64_t rings = 0;     // io_uring rings: a pool that grows to the peak of concurrent I/O
  uint64_t threads = 0;   // threads but io_uring's kernel workers
};

class Harness {
 public:
  explicit Harness(HarnessOptions o);
  ~Harness();

  const HarnessOptions& options() const { return o_; }
  std::string data_path() const { return data_dir_ + "/twd.data"; }
  std::string socket() const { return o_.dir + "/twd.sock"; }
  pid_t twd_pid() const { return twd_; }

  // Starts twd and waits until a ping answers (recovery time into `t`); a failure to serve
  // within the bound is recorded in `t`.
  Status StartTwd(Tally& t);
  // SIGKILL (or SIGTERM and wait for a clean exit) of twd. Returns its wait status.
  int KillTwd(bool clean);
  bool TwdRunning() const { return twd_ > 0; }

  // Client processes.
  void SpawnWorkers(uint32_t epoch);
  void SpawnWorker(uint32_t index, uint32_t epoch, bool flood = false);
  // SIGKILL, reaped, respawned with the same identity (in `epoch`, or the current one).
  void KillWorker(uint32_t index, int64_t epoch = -1);
  void StopWorkers();  // SIGSTOP all
  void ContWorkers();  // SIGCONT all
  void EndWorkers();   // SIGTERM, wait (SIGKILL after a guard), collect stats
  uint32_t epoch() const { return epoch_; }
  uint64_t WorkerOps() const;
  // Every worker's counters added up.
  WorkerStats SumWorkerStats() const;

  // Reads every worker's acknowledgement log and reads back every chunk acknowledged `disk`
  // and not deleted since. `rot`: misses are injected rot (counted, then forgiven), not loss.
  Status Verify(Tally& t, bool rot);
  // twd's counters (JSON) through the verifier's connection.
  StatusOr<std::string> Stats();
  ProcUse TwdUse() const;
  // Waits until twd's fds and threads are back to `base`, no lease is live and only the
  // verifier is connected; records a failure in `t` when the guard passes first.
  void CheckBaseline(const ProcUse& base, uint64_t rss_slack_kib, Tally& t);
  // Adds the workers' counters to `t` (ops, chunks verified, wrong bytes).
  void CollectWorkerStats(Tally& t);

  // Processes that died on their own (a crash, a sanitizer report) since the last call.
  void DrainProblems(Tally& t);

  // Sleeps `ms` while the workload runs (the harness's pacing; nothing is decided by time).
  static void Run(uint32_t ms);

 private:
  Status ConnectVerifier();
  void CloseVerifier();

  HarnessOptions o_;
  std::string data_dir_;
  pid_t twd_ = -1;
  uint32_t epoch_ = 0;
  uint32_t max_epoch_ = 0;
  struct WorkerProc {
    pid_t pid = -1;
    uint64_t spawns = 0;
    WorkerConfig config;
  };
  std::vector<WorkerProc> workers_;
  tw_client* verifier_ = nullptr;
  uint32_t verifier_epochs_ = 0;
  // Keys forgiven after injected rot: key → the acknowledgement sequence then.
  std::map<std::string, uint64_t> forgiven_;
  std::vector<std::string> problems_;
};

// Runs `argv` (no shell), returns its exit status; output appended to `log`.
int RunCommand(const std::vector<std::string>& argv, const std::string& log);

}  // namespace tw::torture
