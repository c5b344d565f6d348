// tw-torture: system-level crash, fault and load torture of a real twd (docs/reliability.md).
//
// Many client processes run a mixed workload against a twd process while the harness kills
// it, cuts its power, rots its bytes, fills its file system, stalls its I/O and kills its
// clients; after every step it checks that every chunk acknowledged `disk` is there byte for
// byte, that no read returned bytes other than the ones put, that twd served again within the
// recovery bound, and (at the end of each scenario) that fds, threads, RSS and leases are
// back to their baseline once the clients have left. It prints one table row per scenario
// and exits non-zero when any invariant failed.
//
//   tw-torture --twd build/bin/twd --torture-twd build/bin/torture_twd --seed 7
//   tw-torture ... --scenarios kill9,powercut --cycles 100 --clients 64
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "harness.h"
#include "hook_device.h"
#include "soak.h"
#include "tw/common/strings.h"
#include "workload.h"

namespace tw::torture {
namespace {

struct Flags {
  uint64_t seed = 1;
  uint32_t clients = 16;
  uint32_t cycles = 10;
  std::string scenarios = "all";
  std::string twd, torture_twd, dir;
  uint32_t recovery_bound_ms = 30000;
  uint32_t rss_slack_mib = 512;
  uint64_t nvme_mib = 2048;
  bool keep = false;
  double soak_minutes = 0;
  double sample_seconds = 60;
  uint64_t dram_mib = 256;
  std::string out;
};

const std::vector<std::string> kScenarios = {"kill9", "powercut", "bitrot", "fullfs",
                                             "stall", "clients",  "mixed"};

using Rng = std::mt19937_64;
uint32_t Between(Rng& rng, uint32_t lo, uint32_t hi) {
  return lo + uint32_t(rng() % (hi - lo + 1));
}

// The miss reasons of acknowledged chunks lost to injected rot.
std::string Reasons(const Tally& t) {
  std::string s;
  for (const auto& [reason, n] : t.rot_reasons) s += StrCat(s.empty() ? "" : ", ", reason, " ", n);
  return s.empty() ? "none" : s;
}

// A restart after a crash, with the clients held still, then the check of every chunk they
// logged as acknowledged `disk`.
bool RestartAndVerify(Harness& h, Tally& t, bool rot) {
  if (!h.StartTwd(t).ok()) return false;
  const bool ok = h.Verify(t, rot).ok();
  h.ContWorkers();
  return ok;
}

// Flips bytes of the stopped twd's data file: `n` in written 4 KiB blocks past the
// superblocks (region headers, summaries, journal, records), and sometimes one in one of
// the two superblock copies or in the namespace registry.
void Rot(Harness& h, Rng& rng, int n, Tally& t, uint64_t* flips) {
  const std::string path = h.data_path();
  int fd = open(path.c_str(), O_RDWR);
  if (fd < 0) return;
  struct stat st {};
  fstat(fd, &st);
  const uint64_t blocks = uint64_t(st.st_size) / 4096;
  std::vector<uint8_t> b(4096);
  int done = 0;
  for (int tries = 0; tries < 4000 && done < n && blocks > 2; ++tries) {
    const uint64_t blk = 2 + rng() % (blocks - 2);
    if (pread(fd, b.data(), 4096, off_t(blk * 4096)) != 4096) continue;
    if (std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; })) continue;
    const uint64_t at = rng() % 4096;
    b[at] ^= uint8_t(1u << (rng() % 8));
    if (pwrite(fd, b.data() + at, 1, off_t(blk * 4096 + at)) == 1) ++done;
  }
  if (rng() % 4 == 0) {  // one superblock copy: the other must carry the store
    uint8_t x = 0;
    const off_t at = off_t((rng() % 2) * 4096 + rng() % 256);
    if (pread(fd, &x, 1, at) == 1) {
      x ^= 0x10;
      if (pwrite(fd, &x, 1, at) == 1) ++done;
    }
  }
  fdatasync(fd);
  close(fd);
  const std::string reg = path + ".namespaces";
  if (rng() % 4 == 0 && std::filesystem::exists(reg)) {
    int rfd = open(reg.c_str(), O_RDWR);
    struct stat rs {};
    if (rfd >= 0 && fstat(rfd, &rs) == 0 && rs.st_size > 8) {
      uint8_t x = 0;
      const off_t at = off_t(8 + rng() % uint64_t(rs.st_size - 8));
      if (pread(rfd, &x, 1, at) == 1) {
        x ^= 0x01;
        if (pwrite(rfd, &x, 1, at) == 1) ++done;
      }
    }
    if (rfd >= 0) close(rfd);
  }
  *flips += uint64_t(done);
  (void)t;
}

// The end of every scenario: a crash and restart with the clients held, the baseline of
// twd's resources with only the verifier connected, a load period, the clients leave, the
// resources must come back; then a clean stop and a restart, each verified.
void Finish(Harness& h, Tally& t, bool rot) {
  h.StopWorkers();
  h.KillTwd(false);
  if (!h.StartTwd(t).ok()) return;
  (void)h.Verify(t, rot);
  const ProcUse base = h.TwdUse();
  h.ContWorkers();
  Harness::Run(800);
  h.EndWorkers();
  h.CheckBaseline(base, uint64_t(512) << 10, t);
  (void)h.Verify(t, rot);
  h.CollectWorkerStats(t);
  const int status = h.KillTwd(true);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    t.failures.push_back(StrCat("clean shutdown: twd exit status ", status));
  }
  if (h.StartTwd(t).ok()) (void)h.Verify(t, rot);
  h.KillTwd(true);
}

void Kill9(Harness& h, Tally& t, Rng& rng, uint32_t cycles) {
  if (!h.StartTwd(t).ok()) return;
  h.SpawnWorkers(0);
  for (uint32_t c = 0; c < cycles; ++c, ++t.cycles) {
    Harness::Run(Between(rng, 80, 500));
    h.KillTwd(false);
    h.StopWorkers();
    if (!RestartAndVerify(h, t, false)) return;
  }
  Finish(h, t, false);
}

void PowerCut(Harness& h, Tally& t, Rng& rng, uint32_t cycles) {
  if (!h.StartTwd(t).ok()) return;
  h.SpawnWorkers(0);
  PowerCutReport sum;
  for (uint32_t c = 0; c < cycles; ++c, ++t.cycles) {
    Harness::Run(Between(rng, 80, 500));
    h.KillTwd(false);
    h.StopWorkers();
    auto r = ApplyPowerCut(h.data_path(), rng() % 3 == 0, rng());
    if (!r.ok()) {
      t.failures.push_back(StrCat("power cut: ", r.status().ToString()));
      return;
    }
    sum.writes += r->writes;
    sum.lost += r->lost;
    sum.torn += r->torn;
    sum.kept += r->kept;
    if (!RestartAndVerify(h, t, false)) return;
  }
  t.notes.push_back(StrCat("unsynced writes at the cuts: ", sum.writes, " (", sum.lost, " lost, ",
                           sum.torn, " torn, ", sum.kept, " kept)"));
  Finish(h, t, false);
}

void BitRot(Harness& h, Tally& t, Rng& rng, uint32_t cycles) {
  if (!h.StartTwd(t).ok()) return;
  h.SpawnWorkers(0);
  uint64_t flips = 0;
  for (uint32_t c = 0; c < cycles; ++c, ++t.cycles) {
    Harness::Run(Between(rng, 150, 600));
    h.StopWorkers();
    h.KillTwd(rng() % 2 == 0);
    Rot(h, rng, 3, t, &flips);
    if (!RestartAndVerify(h, t, true)) return;
  }
  t.notes.push_back(StrCat(flips, " bytes flipped; ", t.rot_misses,
                           " acknowledged chunks then missed (", Reasons(t), ")"));
  Finish(h, t, true);
}

// A small ext4 file system on a loop device, filled up after twd made its data file.
class LoopFs {
 public:
  explicit LoopFs(const std::string& dir) : dir_(dir) {}
  ~LoopFs() {
    if (mounted_) RunCommand({"/bin/umount", "-l", mnt()}, dir_ + "/loop.log");
    if (!dev_.empty()) RunCommand({"/sbin/losetup", "-d", dev_}, dir_ + "/loop.log");
  }
  std::string mnt() const { return dir_ + "/mnt"; }
  // Empty on success, else why it could not be made.
  std::string Make(uint64_t bytes) {
    const std::string img = dir_ + "/fs.img", log = dir_ + "/loop.log";
    if (geteuid() != 0) return "not root";
    { std::ofstream f(img); }
    std::filesystem::resize_file(img, bytes);
    if (RunCommand({"/sbin/mkfs.ext4", "-q", "-F", img}, log) != 0) return "mkfs.ext4 failed";
    const std::string out = dir_ + "/losetup.out";
    if (RunCommand({"/sbin/losetup", "--find", "--show", img}, out) != 0) return "losetup failed";
    std::ifstream in(out);
    std::getline(in, dev_);
    std::filesystem::create_directories(mnt());
    if (RunCommand({"/bin/mount", dev_, mnt()}, log) != 0) return "mount failed";
    mounted_ = true;
    return "";
  }
  // Fills the rest of the file system; returns the bytes written.
  uint64_t Fill() {
    int fd = open((mnt() + "/filler").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return 0;
    std::vector<char> b(1 << 20, 'x');
    uint64_t n = 0;
    for (size_t sz = b.size(); sz >= 512;) {
      ssize_t w = write(fd, b.data(), sz);
      if (w > 0) {
        n += uint64_t(w);
      } else {
        sz /= 2;
      }
    }
    fsync(fd);
    close(fd);
    return n;
  }

 private:
  std::string dir_;
  std::string dev_;
  bool mounted_ = false;
};

void FullFs(Harness& h, Tally& t, Rng& rng, uint32_t cycles, LoopFs* fs, std::string enospc) {
  if (!h.StartTwd(t).ok()) return;
  if (fs != nullptr) t.notes.push_back(StrCat("file system filled: ", fs->Fill() >> 20, " MiB"));
  h.SpawnWorkers(0);
  const uint32_t clients = h.options().clients;
  for (uint32_t c = 0; c < cycles; ++c, ++t.cycles) {
    // New namespaces each cycle: twd must register them on a full file system.
    h.KillWorker(c % clients, c + 1);
    Harness::Run(Between(rng, 80, 300));
    {
      std::ofstream(enospc) << "on\n";  // the device's out-of-space fault
    }
    Harness::Run(Between(rng, 50, 300));
    std::filesystem::remove(enospc);
    Harness::Run(Between(rng, 50, 200));
    h.KillTwd(false);
    h.StopWorkers();
    if (!RestartAndVerify(h, t, false)) return;
  }
  Finish(h, t, false);
}

void Stall(Harness& h, Tally& t, Rng& rng, uint32_t cycles, const std::string& stall) {
  if (!h.StartTwd(t).ok()) return;
  h.SpawnWorkers(0);
  for (uint32_t c = 0; c < cycles; ++c, ++t.cycles) {
    Harness::Run(Between(rng, 80, 300));
    { std::ofstream(stall) << "on\n"; }
    Harness::Run(Between(rng, 50, 800));
    if (rng() % 4 == 0) {  // killed while its I/O hangs
      h.KillTwd(false);
      h.StopWorkers();
      std::filesystem::remove(stall);
      if (!RestartAndVerify(h, t, false)) return;
      continue;
    }
    std::filesystem::remove(stall);
    h.StopWorkers();
    (void)h.Verify(t, false);  // serves again once the I/O flows
    h.ContWorkers();
  }
  Finish(h, t, false);
}

void Clients(Harness& h, Tally& t, Rng& rng, uint32_t cycles) {
  if (!h.StartTwd(t).ok()) return;
  const uint32_t clients = h.options().clients;
  h.SpawnWorkers(0);
  h.SpawnWorker(clients, 0, /*flood=*/true);  // sends, then never reads
  for (uint32_t c = 0; c < cycles; ++c, ++t.cycles) {
    const uint64_t before = h.WorkerOps();
    Harness::Run(Between(rng, 100, 400));
    const int kills = int(Between(rng, 1, 3));
    for (int k = 0; k < kills; ++k) h.KillWorker(uint32_t(rng() % clients));  // mid-op
    Harness::Run(Between(rng, 100, 300));
    if (h.WorkerOps() == before) {
      t.failures.push_back("no client made progress while one client never reads");
    }
    h.StopWorkers();
    (void)h.Verify(t, false);
    h.ContWorkers();
  }
  Finish(h, t, false);
}

void Mixed(Harness& h, Tally& t, Rng& rng, uint32_t cycles, const std::string& stall,
           const std::string& enospc) {
  if (!h.StartTwd(t).ok()) return;
  const uint32_t clients = h.options().clients;
  h.SpawnWorkers(0);
  bool rotted = false;
  uint64_t flips = 0;
  for (uint32_t c = 0; c < cycles; ++c, ++t.cycles) {
    Harness::Run(Between(rng, 80, 400));
    switch (rng() % 6) {
      case 0:  // SIGKILL
        h.KillTwd(false);
        h.StopWorkers();
        break;
      case 1: {  // power cut
        h.KillTwd(false);
        h.StopWorkers();
        auto r = ApplyPowerCut(h.data_path(), rng() % 3 == 0, rng());
        if (!r.ok()) t.failures.push_back(StrCat("power cut: ", r.status().ToString()));
        break;
      }
      case 2:  // rot
        h.StopWorkers();
        h.KillTwd(rng() % 2 == 0);
        Rot(h, rng, 2, t, &flips);
        rotted = true;
        break;
      case 3: {  // stalled I/O, sometimes killed in the stall
        std::ofstream(stall) << "on\n";
        Harness::Run(Between(rng, 50, 500));
        if (rng() % 2 == 0) h.KillTwd(false);
        std::filesystem::remove(stall);
        h.StopWorkers();
        break;
      }
      case 4: {  // out of space
        std::ofstream(enospc) << "on\n";
        Harness::Run(Between(rng, 50, 300));
        std::filesystem::remove(enospc);
        h.KillTwd(false);
        h.StopWorkers();
        break;
      }
      default:  // clients die mid-op
        for (int k = 0; k < 3; ++k) h.KillWorker(uint32_t(rng() % clients));
        h.StopWorkers();
        break;
    }
    if (!h.TwdRunning()) {
      if (!RestartAndVerify(h, t, rotted)) return;
    } else {
      (void)h.Verify(t, rotted);
      h.ContWorkers();
    }
  }
  if (flips > 0)
    t.notes.push_back(StrCat(flips, " bytes flipped; ", t.rot_misses,
                             " acknowledged chunks then missed (", Reasons(t), ")"));
  Finish(h, t, rotted);
}

std::string Ms(const std::vector<double>& v, double q) {
  if (v.empty()) return "-";
  std::vector<double> s = v;
  std::sort(s.begin(), s.end());
  const size_t i = std::min(s.size() - 1, size_t(q * double(s.size() - 1) + 0.5));
  char b[32];
  std::snprintf(b, sizeof b, "%.0f", s[i]);
  return b;
}

int Main(int argc, char** argv) {
  Flags f;
  CLI::App app{"tw-torture: crash, fault and load torture of a real twd"};
  app.add_option("--seed", f.seed, "seed of every random choice");
  app.add_option("--clients", f.clients, "client processes (16-64)")->check(CLI::Range(1, 256));
  app.add_option("--cycles", f.cycles, "fault cycles per scenario");
  app.add_option("--scenarios", f.scenarios,
                 "comma list of kill9,powercut,bitrot,fullfs,stall,clients,mixed or all");
  app.add_option("--twd", f.twd, "the twd binary")->required();
  app.add_option("--torture-twd", f.torture_twd, "twd with the test-only device hooks")->required();
  app.add_option("--dir", f.dir, "work directory (default: a new one under $TMPDIR)");
  app.add_option("--recovery-bound-ms", f.recovery_bound_ms,
                 "twd must serve this soon after a (re)start");
  app.add_option("--nvme-mib", f.nvme_mib, "NVMe tier of each scenario's twd, MiB");
  app.add_flag("--keep", f.keep, "keep the work directory");
  app.add_option("--soak-minutes", f.soak_minutes,
                 "soak instead of torture: run this long without faults, sampling");
  app.add_option("--sample-seconds", f.sample_seconds, "soak: seconds between samples");
  app.add_option("--dram-mib", f.dram_mib, "soak: DRAM tier, MiB");
  app.add_option("--out", f.out, "soak: write the samples here (JSON lines)");
  CLI11_PARSE(app, argc, argv);

  std::vector<std::string> chosen;
  if (f.scenarios == "all") {
    chosen = kScenarios;
  } else {
    std::stringstream ss(f.scenarios);
    std::string s;
    while (std::getline(ss, s, ',')) {
      if (std::find(kScenarios.begin(), kScenarios.end(), s) == kScenarios.end()) {
        std::fprintf(stderr, "tw-torture: unknown scenario %s\n", s.c_str());
        return 2;
      }
      chosen.push_back(s);
    }
  }
  if (f.dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/tw-torture-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) return 2;
    f.dir = tmpl;
  }
  const std::string self = std::filesystem::read_symlink("/proc/self/exe");
  if (f.soak_minutes > 0) {
    SoakOptions so;
    so.self = self;
    so.twd = f.twd;
    so.dir = f.dir + "/soak";
    so.minutes = f.soak_minutes;
    so.sample_seconds = f.sample_seconds;
    so.clients = f.clients;
    so.dram_mib = f.dram_mib;
    so.nvme_mib = f.nvme_mib;
    so.seed = f.seed;
    so.out = f.out;
    const int rc = RunSoak(so);
    if (!f.keep && rc == 0) std::filesystem::remove_all(f.dir);
    return rc;
  }
  std::printf("tw-torture: seed %llu, %u clients, %u cycles per scenario, in %s\n",
              (unsigned long long)f.seed, f.clients, f.cycles, f.dir.c_str());
  std::fflush(stdout);

  std::vector<std::pair<std::string, Tally>> rows;
  for (size_t si = 0; si < chosen.size(); ++si) {
    const std::string& name = chosen[si];
    Rng rng(f.seed * 1315423911u + si);
    HarnessOptions o;
    o.self = self;
    o.dir = f.dir + "/" + name;
    o.seed = f.seed + si;
    o.clients = f.clients;
    o.recovery_bound_ms = f.recovery_bound_ms;
    o.nvme_capacity = f.nvme_mib << 20;
    o.twd = f.twd;
    const std::string stall = o.dir + ".stall", enospc = o.dir + ".enospc";
    Tally t;
    const auto start = std::chrono::steady_clock::now();
    std::unique_ptr<LoopFs> fs;
    if (name == "powercut" || name == "stall" || name == "fullfs" || name == "mixed") {
      o.twd = f.torture_twd;
      o.twd_env = {"TW_TORTURE_STALL_FILE=" + stall, "TW_TORTURE_ENOSPC_FILE=" + enospc,
                   "TW_TORTURE_DELAY_US=" + std::string(name == "stall" ? "200" : "0")};
      if (name == "powercut" || name == "mixed") {
        o.twd_env.push_back("TW_TORTURE_UNDO=1");
        o.twd_env.push_back("TW_TORTURE_SYNC_DELAY_US=4000");
      }
    }
    if (name == "fullfs") {
      std::filesystem::create_directories(f.dir + "/fullfs-fs");
      fs = std::make_unique<LoopFs>(f.dir + "/fullfs-fs");
      // The data file takes most of a small file system; the rest is filled once it exists.
      const uint64_t nvme = std::min<uint64_t>(o.nvme_capacity, uint64_t{512} << 20);
      const std::string why = fs->Make(nvme + (uint64_t{96} << 20));
      if (why.empty()) {
        o.data_dir = fs->mnt() + "/data";
        o.nvme_capacity = nvme;
      } else {
        fs.reset();
        t.notes.push_back("no loop device (" + why +
                          "): the device's out-of-space fault only, on the normal file system");
      }
    }
    {
      Harness h(o);
      if (name == "kill9") Kill9(h, t, rng, f.cycles);
      if (name == "powercut") PowerCut(h, t, rng, f.cycles);
      if (name == "bitrot") BitRot(h, t, rng, f.cycles);
      if (name == "fullfs") FullFs(h, t, rng, f.cycles, fs.get(), enospc);
      if (name == "stall") Stall(h, t, rng, f.cycles, stall);
      if (name == "clients") Clients(h, t, rng, f.cycles);
      if (name == "mixed") Mixed(h, t, rng, f.cycles, stall, enospc);
      h.DrainProblems(t);
    }
    fs.reset();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf(
        "%-9s %3llu cycles, %7llu ops, %6llu chunks verified, lost %llu, wrong %llu, "
        "%zu failures (%.0f s)\n",
        name.c_str(), (unsigned long long)t.cycles, (unsigned long long)t.ops,
        (unsigned long long)t.chunks_verified, (unsigned long long)t.lost,
        (unsigned long long)t.wrong, t.failures.size(), secs);
    std::fflush(stdout);
    if (!f.keep && t.failures.empty()) std::filesystem::remove_all(o.dir);
    rows.emplace_back(name, std::move(t));
  }

  std::printf(
      "\n| scenario | cycles | operations | chunks verified | lost | wrong bytes served |"
      " recovery p50 (ms) | recovery p99 (ms) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
  Tally total;
  size_t failures = 0;
  for (const auto& [name, t] : rows) {
    std::printf("| %s | %llu | %llu | %llu | %llu | %llu | %s | %s |\n", name.c_str(),
                (unsigned long long)t.cycles, (unsigned long long)t.ops,
                (unsigned long long)t.chunks_verified, (unsigned long long)t.lost,
                (unsigned long long)t.wrong, Ms(t.recovery_ms, 0.5).c_str(),
                Ms(t.recovery_ms, 0.99).c_str());
    total.cycles += t.cycles;
    total.ops += t.ops;
    total.chunks_verified += t.chunks_verified;
    total.lost += t.lost;
    total.wrong += t.wrong;
    total.recovery_ms.insert(total.recovery_ms.end(), t.recovery_ms.begin(), t.recovery_ms.end());
    failures += t.failures.size();
  }
  std::printf("| **all** | %llu | %llu | %llu | %llu | %llu | %s | %s |\n\n",
              (unsigned long long)total.cycles, (unsigned long long)total.ops,
              (unsigned long long)total.chunks_verified, (unsigned long long)total.lost,
              (unsigned long long)total.wrong, Ms(total.recovery_ms, 0.5).c_str(),
              Ms(total.recovery_ms, 0.99).c_str());
  for (const auto& [name, t] : rows) {
    for (const std::string& n : t.notes) std::printf("%s: %s\n", name.c_str(), n.c_str());
    for (const std::string& x : t.failures)
      std::printf("%s: FAILED: %s\n", name.c_str(), x.c_str());
  }
  if (!f.keep && failures == 0) std::filesystem::remove_all(f.dir);
  std::printf("tw-torture: %s\n", failures == 0 ? "every invariant held" : "invariants FAILED");
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace tw::torture

int main(int argc, char** argv) {
  tw::torture::WorkerConfig wc;
  if (tw::torture::ParseWorkerArgs(argc, argv, &wc)) return tw::torture::RunWorker(wc);
  return tw::torture::Main(argc, argv);
}
