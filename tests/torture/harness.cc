// The torture harness's processes and checks (harness.h).
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tw/common/strings.h"

extern char** environ;

namespace tw::torture {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

pid_t Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
            const std::string& log) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) env_store.emplace_back(*e);
  for (const std::string& e : extra_env) env_store.push_back(e);
  std::vector<char*> env;
  for (std::string& e : env_store) env.push_back(e.data());
  env.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid != 0) return pid;
  // The child: only async-signal-safe calls until exec. It dies with the harness (a killed
  // test must not leave twd or clients running).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
  }
  execve(args[0], args.data(), env.data());
  _exit(127);
}

// Reaps `pid` within `guard`, else kills it. The exit status, or -1.
int Reap(pid_t pid, std::chrono::seconds guard) {
  const auto end = Clock::now() + guard;
  int status = 0;
  while (Clock::now() < end) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

uint64_t CountDir(const std::string& path, const char* skip_comm_prefix = nullptr,
                  const std::string& task_dir = "") {
  uint64_t n = 0;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return 0;
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    if (skip_comm_prefix != nullptr) {
      std::ifstream comm(task_dir + "/" + e->d_name + "/comm");
      std::string name;
      std::getline(comm, name);
      // io_uring's kernel workers come and go with the load; they are not twd's threads.
      if (name.rfind(skip_comm_prefix, 0) == 0) continue;
    }
    ++n;
  }
  closedir(d);
  return n;
}

}  // namespace

int RunCommand(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = Spawn(argv, {}, log);
  if (pid < 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Harness::Harness(HarnessOptions o) : o_(std::move(o)) {
  std::filesystem::remove_all(o_.dir);
  std::filesystem::create_directories(o_.dir);
  data_dir_ = o_.data_dir.empty() ? o_.dir + "/data" : o_.data_dir;
  std::filesystem::create_directories(data_dir_);
  std::ofstream(o_.dir + "/twd.yaml") << "log_level: warn\n"
                                         "metrics: {address: \"\"}\n"
                                         "nvme: {region_size: 4MiB, stripe_unit: 1MiB}\n"
                                         "leases: {duration: 1s}\n"
                                         "workers: 4\n"
                                         "shutdown_grace: 10s\n";
}

Harness::~Harness() {
  for (WorkerProc& w : workers_) {
    if (w.pid > 0) {
      kill(w.pid, SIGKILL);
      waitpid(w.pid, nullptr, 0);
    }
  }
  CloseVerifier();
  if (twd_ > 0) {
    kill(twd_, SIGKILL);
    waitpid(twd_, nullptr, 0);
  }
}

void Harness::Run(uint32_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

Status Harness::StartTwd(Tally& t) {
  std::filesystem::remove(socket());
  const std::vector<std::string> argv = {o_.twd,
                                         "--config",
                                         o_.dir + "/twd.yaml",
                                         "--socket",
                                         socket(),
                                         "--data-dir",
                                         data_dir_,
                                         "--dram-capacity",
                                         std::to_string(o_.dram_capacity),
                                         "--nvme-capacity",
                                         std::to_string(o_.nvme_capacity)};
  const auto start = Clock::now();
  twd_ = Spawn(argv, o_.twd_env, o_.dir + "/twd.log");
  if (twd_ < 0) return InternalError(StrCat("cannot start ", o_.twd));
  const auto guard = std::chrono::milliseconds(2 * uint64_t(o_.recovery_bound_ms));
  while (Clock::now() - start < guard) {
    int status = 0;
    if (waitpid(twd_, &status, WNOHANG) == twd_) {
      twd_ = -1;
      const std::string f =
          StrCat("twd exited at start (status ", status, "; see ", o_.dir, "/twd.log)");
      t.failures.push_back(f);
      return UnavailableError(f);
    }
    if (ConnectVerifier().ok() && tw_client_ping(verifier_, 2000) == TW_OK) {
      const double ms = MsSince(start);
      t.recovery_ms.push_back(ms);
      if (ms > o_.recovery_bound_ms) {
        t.failures.push_back(StrCat("twd served after ", int(ms), " ms, over the bound of ",
                                    o_.recovery_bound_ms, " ms"));
      }
      return OkStatus();
    }
    CloseVerifier();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const std::string f = StrCat("twd did not serve within ", guard.count(), " ms");
  t.failures.push_back(f);
  return UnavailableError(f);
}

int Harness::KillTwd(bool clean) {
  if (twd_ <= 0) return -1;
  CloseVerifier();
  int early = 0;
  if (waitpid(twd_, &early, WNOHANG) == twd_) {
    problems_.push_back(
        StrCat("twd died on its own (wait status ", early, "; see ", o_.dir, "/twd.log)"));
    twd_ = -1;
    return early;
  }
  kill(twd_, clean ? SIGTERM : SIGKILL);
  const int status = Reap(twd_, std::chrono::seconds(60));
  twd_ = -1;
  return status;
}

Status Harness::ConnectVerifier() {
  if (verifier_ != nullptr && verifier_epochs_ > max_epoch_) return OkStatus();
  CloseVerifier();
  std::vector<NamespaceFields> fields;
  std::vector<tw_namespace> ns;
  for (uint32_t e = 0; e <= max_epoch_; ++e) {
    for (int r = 0; r < kRanks; ++r) fields.push_back(NamespaceOf(e, r));
  }
  for (const NamespaceFields& f : fields) ns.push_back(f.Fields());
  tw_client_options opt{};
  const std::string sock = socket();
  opt.socket_path = sock.c_str();
  opt.arena_size = 8ull << 20;
  opt.namespaces = ns.data();
  opt.n_namespaces = ns.size();
  opt.timeout_ms = 2000;
  opt.client_name = "torture-verifier";
  const int rc = tw_client_connect(&opt, &verifier_);
  if (rc != TW_OK) {
    verifier_ = nullptr;
    return UnavailableError(StrCat("verifier connect: ", tw_error_name(rc), " ", tw_last_error()));
  }
  verifier_epochs_ = max_epoch_ + 1;
  return OkStatus();
}

void Harness::CloseVerifier() {
  if (verifier_ != nullptr) tw_client_close(verifier_);
  verifier_ = nullptr;
}

void Harness::SpawnWorkers(uint32_t epoch) {
  for (uint32_t i = 0; i < o_.clients; ++i) SpawnWorker(i, epoch);
}

void Harness::SpawnWorker(uint32_t index, uint32_t epoch, bool flood) {
  if (index < workers_.size() && workers_[index].pid > 0) {  // never two with one identity
    kill(workers_[index].pid, SIGKILL);
    waitpid(workers_[index].pid, nullptr, 0);
  }
  epoch_ = epoch;
  max_epoch_ = std::max(max_epoch_, epoch);
  if (workers_.size() <= index) workers_.resize(index + 1);
  WorkerProc& w = workers_[index];
  WorkerConfig& c = w.config;
  c.socket = socket();
  c.log_path = StrCat(o_.dir, "/w", index, ".log");
  c.stats_path = StrCat(o_.dir, "/w", index, ".stats");
  c.id = index;
  c.epoch = epoch;
  c.seed = o_.seed * 7919 + 1000 * w.spawns++;  // a respawn takes other random choices
  c.flood = flood;
  c.chains = o_.chains;
  c.short_deadline_pct = o_.short_deadline_pct;
  if (access(c.stats_path.c_str(), F_OK) != 0) {
    int fd = open(c.stats_path.c_str(), O_RDWR | O_CREAT, 0644);
    if (fd >= 0) {
      if (ftruncate(fd, sizeof(WorkerStats)) != 0) perror("ftruncate");
      close(fd);
    }
  }
  std::vector<std::string> argv = {o_.self};
  for (const std::string& a : WorkerArgs(c)) argv.push_back(a);
  w.pid = Spawn(argv, {}, StrCat(o_.dir, "/w", index, ".out"));
}

void Harness::KillWorker(uint32_t index, int64_t epoch) {
  if (index >= workers_.size() || workers_[index].pid <= 0) return;
  kill(workers_[index].pid, SIGKILL);
  waitpid(workers_[index].pid, nullptr, 0);
  workers_[index].pid = -1;
  SpawnWorker(index, epoch < 0 ? epoch_ : uint32_t(epoch), workers_[index].config.flood);
}

void Harness::StopWorkers() {
  for (WorkerProc& w : workers_) {
    int status = 0;
    if (w.pid > 0 && waitpid(w.pid, &status, WNOHANG) == w.pid) {
      problems_.push_back(StrCat("client ", w.config.id, " died on its own (wait status ", status,
                                 "; see ", o_.dir, "/w", w.config.id, ".out)"));
      w.pid = -1;
      SpawnWorker(w.config.id, w.config.epoch, w.config.flood);
    }
    if (w.pid > 0) kill(w.pid, SIGSTOP);
  }
}

void Harness::DrainProblems(Tally& t) {
  for (std::string& p : problems_) t.failures.push_back(std::move(p));
  problems_.clear();
}

void Harness::ContWorkers() {
  for (WorkerProc& w : workers_) {
    if (w.pid > 0 && !w.config.flood) kill(w.pid, SIGCONT);
  }
}

void Harness::EndWorkers() {
  for (WorkerProc& w : workers_) {
    if (w.pid <= 0) continue;
    if (w.config.flood) {
      kill(w.pid, SIGKILL);
    } else {
      kill(w.pid, SIGTERM);
      kill(w.pid, SIGCONT);
    }
  }
  for (WorkerProc& w : workers_) {
    if (w.pid <= 0) continue;
    const int status = Reap(w.pid, std::chrono::seconds(30));
    // Our SIGTERM can reach a client just respawned, before it installed its handler.
    const bool ended = (WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
                       (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    if (!w.config.flood && !ended) {
      problems_.push_back(StrCat("client ", w.config.id, " ended with wait status ", status,
                                 " (see ", o_.dir, "/w", w.config.id, ".out)"));
    }
    w.pid = -1;
  }
}

uint64_t Harness::WorkerOps() const { return SumWorkerStats().ops; }

WorkerStats Harness::SumWorkerStats() const {
  WorkerStats sum;
  for (const WorkerProc& w : workers_) {
    WorkerStats s;
    int fd = open(w.config.stats_path.c_str(), O_RDONLY);
    if (fd < 0) continue;
    if (pread(fd, &s, sizeof s, 0) == ssize_t(sizeof s)) {
      sum.ops += s.ops;
      sum.chunks_verified += s.chunks_verified;
      sum.bytes_verified += s.bytes_verified;
      sum.wrong_bytes += s.wrong_bytes;
      sum.late_writes += s.late_writes;
      sum.reconnects += s.reconnects;
      sum.call_errors += s.call_errors;
      sum.leases_taken += s.leases_taken;
      for (int i = 0; i < 8; ++i) {
        sum.misses[i] += s.misses[i];
        sum.puts[i] += s.puts[i];
      }
      for (int i = 0; i < kLatencyBuckets; ++i) {
        sum.lookup_us[i] += s.lookup_us[i];
        sum.get_us[i] += s.get_us[i];
      }
    }
    close(fd);
  }
  return sum;
}

void Harness::CollectWorkerStats(Tally& t) {
  WorkerStats sum;
  for (const WorkerProc& w : workers_) {
    WorkerStats s;
    int fd = open(w.config.stats_path.c_str(), O_RDONLY);
    if (fd < 0) continue;
    if (pread(fd, &s, sizeof s, 0) == ssize_t(sizeof s)) {
      for (int i = 0; i < 8; ++i) {
        sum.misses[i] += s.misses[i];
        sum.puts[i] += s.puts[i];
      }
      sum.reconnects += s.reconnects;
      sum.call_errors += s.call_errors;
      sum.leases_taken += s.leases_taken;
      t.ops += s.ops;
      t.chunks_verified += s.chunks_verified;
      t.wrong += s.wrong_bytes + s.late_writes;
      if (s.wrong_bytes > 0) {
        t.failures.push_back(StrCat("client ", w.config.id, " read ", s.wrong_bytes,
                                    " chunks with wrong bytes (W lines in ", w.config.log_path,
                                    ")"));
      }
      if (s.late_writes > 0) {
        t.failures.push_back(StrCat("client ", w.config.id, ": ", s.late_writes,
                                    " arena ranges written after their request was answered"));
      }
    }
    close(fd);
  }
  std::string puts, misses;
  for (int i = 0; i < 8; ++i) {
    if (sum.puts[i] > 0) puts += StrCat(" ", tw_put_result_name(i), " ", sum.puts[i]);
    if (sum.misses[i] > 0) misses += StrCat(" ", tw_miss_name(i), " ", sum.misses[i]);
  }
  t.notes.push_back(StrCat("clients: puts", puts, "; get misses", misses, "; leases ",
                           sum.leases_taken, "; failed calls ", sum.call_errors, "; connections ",
                           sum.reconnects));
}

Status Harness::Verify(Tally& t, bool rot) {
  struct Entry {
    uint32_t epoch = 0;
    int rank = 0;
    bool acked = false;
    uint64_t seq = 0;
  };
  std::map<std::string, Entry> keys;
  for (size_t wi = 0; wi < workers_.size(); ++wi) {
    std::ifstream in(workers_[wi].config.log_path);
    std::string line;
    uint64_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      std::istringstream ls(line);
      char what = 0;
      uint32_t e = 0;
      int r = 0;
      std::string hex;
      if (!(ls >> what >> e >> r >> hex) || hex.size() != 64) continue;
      if (what != 'A' && what != 'D') continue;
      Entry& en = keys[hex];
      en.epoch = e;
      en.rank = r;
      en.acked = what == 'A';
      if (what == 'A') en.seq = (uint64_t(wi) << 40) | n;
      max_epoch_ = std::max(max_epoch_, e);
    }
  }
  TW_RETURN_IF_ERROR(ConnectVerifier());
  std::vector<std::pair<std::string, Entry>> todo;
  for (const auto& [hex, en] : keys) {
    if (!en.acked) continue;
    auto f = forgiven_.find(hex);
    if (f != forgiven_.end() && f->second >= en.seq) continue;
    todo.emplace_back(hex, en);
  }
  uint64_t size = 0;
  uint8_t* arena = tw_client_arena(verifier_, &size);
  constexpr size_t kBatch = 32;
  constexpr uint64_t kStride = 128 * 1024;
  for (size_t b = 0; b < todo.size(); b += kBatch) {
    const size_t n = std::min(kBatch, todo.size() - b);
    std::vector<tw_get_item> items(n);
    std::vector<KeyBytes> ks(n);
    std::vector<KeyBytes> digests(n);
    for (size_t i = 0; i < n; ++i) {
      const Entry& en = todo[b + i].second;
      FromHex(todo[b + i].first, &ks[i]);
      tw_client_namespace_digest(verifier_, size_t(en.epoch) * kRanks + size_t(en.rank),
                                 digests[i].data());
      items[i].key = ks[i].data();
      items[i].namespace_digest = digests[i].data();
      items[i].arena_offset = i * kStride;
      items[i].arena_length = kStride;
      std::memset(arena + i * kStride, 0x5A, kStride);
    }
    const int rc = tw_client_get(verifier_, items.data(), n, 0, 20000);
    if (rc != TW_OK) {
      const std::string f = StrCat("verify: get failed: ", tw_error_name(rc), " ", tw_last_error());
      t.failures.push_back(f);
      return InternalError(f);
    }
    for (size_t i = 0; i < n; ++i) {
      const std::string& hex = todo[b + i].first;
      if (items[i].tier != TW_TIER_NONE) {
        ++t.chunks_verified;
        if (!CheckValue(ks[i], arena + i * kStride, items[i].bytes)) {
          ++t.wrong;
          t.failures.push_back(StrCat("chunk ", hex, ": bytes other than the ones put"));
        }
        continue;
      }
      forgiven_[hex] = todo[b + i].second.seq;  // counted once
      if (rot) {
        ++t.rot_misses;
        ++t.rot_reasons[tw_miss_name(items[i].miss)];
      } else {
        ++t.lost;
        t.failures.push_back(StrCat("chunk ", hex, " acknowledged disk is lost (miss ",
                                    tw_miss_name(items[i].miss), ")"));
      }
    }
  }
  // The check above is strict only while NVMe reclaim has evicted nothing: an evicted chunk
  // is a legitimate miss. Scenarios size their writes below the tier; say so if they did not.
  auto stats = Stats();
  if (stats.ok()) {
    auto j = nlohmann::json::parse(*stats, nullptr, false);
    if (!j.is_discarded() && j.contains("tiers") && j["tiers"].contains("nvme")) {
      const uint64_t ev = j["tiers"]["nvme"].value("evictions", uint64_t{0});
      if (ev > 0) {
        t.failures.push_back(StrCat("NVMe reclaim evicted ", ev,
                                    " chunks: the workload outgrew "
                                    "the tier and the durability check is not strict "
                                    "(raise --nvme-mib)"));
      }
    }
  }
  return OkStatus();
}

StatusOr<std::string> Harness::Stats() {
  TW_RETURN_IF_ERROR(ConnectVerifier());
  std::string buf(1 << 16, '\0');
  size_t needed = 0;
  const int rc = tw_client_stats(verifier_, buf.data(), buf.size(), &needed, 5000);
  if (rc != TW_OK) return InternalError(StrCat("stats: ", tw_error_name(rc)));
  buf.resize(needed > 0 ? needed - 1 : 0);
  return buf;
}

ProcUse Harness::TwdUse() const {
  ProcUse u;
  if (twd_ <= 0) return u;
  const std::string p = StrCat("/proc/", twd_);
  std::ifstream st(p + "/status");
  std::string line;
  while (std::getline(st, line)) {
    if (line.rfind("VmRSS:", 0) == 0) u.rss_kib = std::strtoull(line.c_str() + 6, nullptr, 10);
    if (line.rfind("RssAnon:", 0) == 0) u.anon_kib = std::strtoull(line.c_str() + 8, nullptr, 10);
  }
  DIR* d = opendir((p + "/fd").c_str());
  while (d != nullptr) {
    struct dirent* e = readdir(d);
    if (e == nullptr) break;
    if (e->d_name[0] == '.') continue;
    char target[256] = {};
    const ssize_t n = readlink((p + "/fd/" + e->d_name).c_str(), target, sizeof target - 1);
    if (n > 0 && std::string(target, size_t(n)) == "anon_inode:[io_uring]") {
      ++u.rings;
    } else {
      ++u.fds;
    }
  }
  if (d != nullptr) closedir(d);
  u.threads = CountDir(p + "/task", "iou-", p + "/task");
  return u;
}

void Harness::CheckBaseline(const ProcUse& base, uint64_t rss_slack_kib, Tally& t) {
  const auto end = Clock::now() + std::chrono::seconds(30);
  ProcUse now;
  uint64_t leases = 0, clients = 0;
  while (true) {
    now = TwdUse();
    auto s = Stats();
    if (s.ok()) {
      auto j = nlohmann::json::parse(*s, nullptr, false);
      if (!j.is_discarded()) {
        leases = j.value("live_leases", uint64_t{0});
        clients = j.value("connected_clients", uint64_t{0});
      }
    }
    const bool back =
        now.fds <= base.fds && now.threads <= base.threads && leases == 0 && clients <= 1;
    if (back || Clock::now() > end) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  t.notes.push_back(StrCat("after clients left: fds ", base.fds, "→", now.fds, ", io_uring rings ",
                           base.rings, "→", now.rings, ", threads ", base.threads, "→", now.threads,
                           ", RSS ", base.rss_kib / 1024, "→", now.rss_kib / 1024,
                           " MiB, live leases ", leases, ", clients ", clients));
  if (now.fds > base.fds) t.failures.push_back(StrCat("fds not back: ", base.fds, "→", now.fds));
  if (now.rings > now.threads) {
    t.failures.push_back(StrCat("io_uring rings (", now.rings, ") outnumber threads (", now.threads,
                                "): the ring pool leaks"));
  }
  if (now.threads > base.threads) {
    t.failures.push_back(StrCat("threads not back: ", base.threads, "→", now.threads));
  }
  if (leases != 0) t.failures.push_back(StrCat(leases, " leases still live"));
  if (clients > 1) t.failures.push_back(StrCat(clients - 1, " client connections still open"));
  if (now.rss_kib > base.rss_kib + rss_slack_kib) {
    t.failures.push_back(StrCat("RSS grew ", (now.rss_kib - base.rss_kib) / 1024,
                                " MiB, more than the slack of ", rss_slack_kib / 1024, " MiB"));
  }
}

}  // namespace tw::torture
