#include "service_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <thread>

#include "tw/common/strings.h"

namespace tw::bench {

using client::Client;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
double Gbps(uint64_t bytes, double s) { return s > 0 ? static_cast<double>(bytes) / s / 1e9 : 0; }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

void Reporter::Figure(const std::string& name, double value, const std::string& unit) {
  results_.push_back(Result{name, value, unit, std::nullopt});
}

void Reporter::Versus(const std::string& name, double value, const std::string& unit,
                      double reference) {
  results_.push_back(Result{name, value, unit, reference});
}

void Reporter::Compare(const std::string& name, double value, const std::string& unit,
                       double reference, double target, bool lower_is_better) {
  results_.push_back(Result{name, value, unit, reference});
  targets_.push_back(Target{name, reference > 0 ? value / reference : 0, target, lower_is_better});
}

void Reporter::Print(bool json) const {
  tw::bench::Print(results_, json);
  if (json) return;
  std::printf("\n%-34s %7s %9s  %s\n", "target (ratio to reference)", "ratio", "target", "");
  for (const Target& t : targets_) {
    bool met = t.lower_is_better ? t.ratio <= t.target : t.ratio >= t.target;
    std::printf("%-34s %7.2f %2s %6.2f  %s\n", t.name.c_str(), t.ratio,
                t.lower_is_better ? "<=" : ">=", t.target, met ? "met" : "NOT met");
  }
}

void ReportMedian(Reporter& out, const std::string& name, std::vector<Alternated> runs,
                  double target) {
  if (runs.empty()) return;
  for (size_t i = 0; i < runs.size(); ++i) {
    out.Versus(StrCat(name, "_run_", i + 1), runs[i].value, "GB/s", runs[i].reference);
  }
  std::sort(runs.begin(), runs.end(),
            [](const Alternated& a, const Alternated& b) { return a.ratio() < b.ratio(); });
  const Alternated& m = runs[runs.size() / 2];
  out.Compare(name, m.value, "GB/s", m.reference, target, false);
}

Status Child::Start(std::vector<std::string> argv, const std::string& wait_for_path,
                    const std::string& log_path) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) return ErrnoStatus(errno, "fork");
  if (pid_ == 0) {
    // No orphan when the benchmark dies: the child (and what it execs) gets SIGKILL.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(args[0], args.data());
    _exit(127);
  }
  for (int i = 0; i < 1200; ++i) {
    struct stat st;
    if (stat(wait_for_path.c_str(), &st) == 0) return OkStatus();
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return UnavailableError(StrCat(argv[0], " exited during startup (see ", log_path, ")"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  Stop();
  return DeadlineExceededError(StrCat(argv[0], " did not create ", wait_for_path));
}

void Child::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

Namespace BenchNamespace(const std::string& name, uint32_t chunk_tokens) {
  Namespace ns;
  ns.model = "tw-bench/" + name;
  ns.kv_dtype = "bf16";
  ns.parallel = "tp=0/1,pp=0/1";
  ns.chunk_tokens = std::to_string(chunk_tokens);
  return *NormalizeNamespace(ns);
}

Chain MakeChain(const Namespace& ns, size_t n, uint32_t salt) {
  Chain c;
  c.digest = NamespaceDigest(ns);
  uint32_t ct = *ChunkTokens(ns);
  Key parent = c.digest;
  for (size_t j = 0; j < n; ++j) {
    std::vector<uint32_t> t(ct);
    for (uint32_t i = 0; i < ct; ++i) t[i] = salt * 1000003u + static_cast<uint32_t>(j * ct + i);
    parent = ChunkKey(parent, {}, t);
    c.keys.push_back(parent);
    c.tokens.push_back(std::move(t));
  }
  return c;
}

StatusOr<double> PutChain(Client& c, const Chain& chain, uint64_t size, int depth,
                          client::Durability durability) {
  std::vector<client::Future<std::vector<client::PutReply>>> inflight;
  auto t0 = Clock::now();
  auto drain = [&]() -> Status {
    auto r = client::Await(inflight.front(), std::chrono::milliseconds(120000));
    inflight.erase(inflight.begin());
    if (!r.ok()) return r.status();
    auto res = (*r)[0].result;
    if (res != client::PutResult::kStored && res != client::PutResult::kExists) {
      return InternalError(StrCat("put: ", ToString(res), " ", (*r)[0].message));
    }
    return OkStatus();
  };
  for (size_t j = 0; j < chain.keys.size(); ++j) {
    client::PutItem p;
    p.ref = {chain.keys[j], chain.digest};
    p.parent = j == 0 ? chain.digest : chain.keys[j - 1];
    p.tokens = chain.tokens[j];
    p.segment_sizes = {size};
    p.ranges = {client::ScatterRange{0, 0, size, (j % depth) * size}};
    p.durability = durability;
    if (static_cast<int>(inflight.size()) >= depth) TW_RETURN_IF_ERROR(drain());
    inflight.push_back(c.PutAsync({p}, std::chrono::milliseconds(120000)));
  }
  while (!inflight.empty()) TW_RETURN_IF_ERROR(drain());
  return Seconds(t0, Clock::now());
}

GetStats GetChain(Client& c, const Chain& chain, uint64_t size, int depth, int passes) {
  GetStats s;
  std::vector<client::Future<std::vector<client::GetReply>>> inflight;
  auto drain = [&] {
    auto r = client::Await(inflight.front(), std::chrono::milliseconds(120000));
    inflight.erase(inflight.begin());
    if (!r.ok() || (*r)[0].miss != client::MissReason::kNone) {
      ++s.misses;
      s.last_miss = r.ok() ? std::string(ToString((*r)[0].miss)) : r.status().ToString();
      return;
    }
    s.bytes += (*r)[0].bytes;
    switch ((*r)[0].tier) {
      case client::Tier::kNvme:
        ++s.nvme;
        break;
      case client::Tier::kDram:
        ++s.dram;
        break;
      default:  // a chunk from another node (the mesh)
        ++s.peer;
        break;
    }
  };
  auto t0 = Clock::now();
  size_t slot = 0;
  for (int p = 0; p < passes; ++p) {
    for (size_t j = 0; j < chain.keys.size(); ++j) {
      client::GetItem g;
      g.ref = {chain.keys[j], chain.digest};
      g.arena_offset = (slot++ % depth) * size;
      g.arena_length = size;
      if (static_cast<int>(inflight.size()) >= depth) drain();
      inflight.push_back(c.GetAsync({g}, std::chrono::milliseconds(120000)));
    }
  }
  while (!inflight.empty()) drain();
  s.seconds = Seconds(t0, Clock::now());
  return s;
}

StatusOr<std::unique_ptr<Client>> Connect(const std::string& sock, uint64_t arena,
                                          std::vector<Namespace> ns) {
  client::ClientOptions o;
  o.socket_path = sock;
  o.arena_size = arena;
  o.namespaces = std::move(ns);
  o.timeout = std::chrono::milliseconds(120000);
  o.client_name = "tw-bench";
  return Client::Connect(std::move(o));
}

}  // namespace tw::bench
