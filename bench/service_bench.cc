// `tw-bench service`: twd measured as a service, with its references in the same run.
//
// The load runs in this process; twd, Redis and the far ends of the socket references run in
// separate processes. References first — memcpy into pre-faulted memory, a bare Unix-socket
// stream of the same bytes, a bare Unix-socket ping-pong — then through twd: PING and lookup
// of a 512-chunk chain against the ping-pong; put with durability disk, each of `--runs` runs
// right after a raw fdatasync'ed O_DIRECT write of as many bytes; get of 32 MiB chunks from
// DRAM against memcpy with one thread and with as many threads as twd has workers (measured
// right before and after the gets); 1/4/16 concurrent clients; get from NVMe by a twd
// restarted without a DRAM tier, each run right after a raw O_DIRECT read; then the same
// put/get workload against Debian's redis-server over a Unix socket. Each figure is printed
// with its reference and the ratio the issue targets (one JSON object per line with --json).
// Nothing here passes or fails.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "buffer.h"
#include "command.h"
#include "reference.h"
#include "report.h"
#include "service_util.h"
#include "socket_reference.h"
#include "tw/client/client.h"
#include "tw/common/keys.h"
#include "tw/common/strings.h"

#ifdef TW_HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif

namespace tw::bench {
namespace {

using client::Client;

struct ServiceBenchOptions {
  std::string twd_path;  // the twd binary (default: next to tw-bench)
  std::string redis_path = "/usr/bin/redis-server";
  std::string data_dir;                       // twd's data and the raw O_DIRECT file
  uint64_t chunk_bytes = uint64_t{32} << 20;  // value size (a 256-token Llama-3.1-8B chunk)
  int chunks = 16;                            // chunks per working set
  int passes = 3;                             // get passes over the working set
  int depth = 4;                              // requests in flight per client
  int lookups = 2000;                         // lookups of the 512-chunk chain
  int pings = 20000;                          // reference ping-pongs
  int runs = 3;               // alternated runs of the disk put and NVMe get (median reported)
  int workers = 0;            // twd's workers (0: twd's default, one per CPU in [4, 32])
  bool json = false;          // one JSON object per line
  bool float_cpus = false;    // latency figures without CPU pinning
  bool latency_only = false;  // the ping-pong, PING and lookup figures only
};

// twd's request workers as twd counts them (server.cc), passed to it explicitly.
int TwdWorkers(const ServiceBenchOptions& o) {
  if (o.workers > 0) return o.workers;
  return std::clamp<int>(static_cast<int>(std::thread::hardware_concurrency()), 4, 32);
}

// Says where the chunks of a get measurement really came from, when it is not all one tier.
void Warn(const char* what, const GetStats& g) {
  if ((g.dram == 0 || g.nvme == 0) && g.misses == 0) return;
  std::cerr << "tw-bench service: " << what << ": served " << g.dram << " from DRAM, " << g.nvme
            << " from NVMe, " << g.misses << " misses"
            << (g.misses != 0 ? " (last: " + g.last_miss + ")" : "") << "\n";
}

#ifdef TW_HAVE_HIREDIS
// SET then GET of `count` values of `chunk` bytes, `passes` GET passes; GB/s of each.
StatusOr<std::pair<double, double>> RedisGbps(const std::string& sock, uint64_t chunk, int count,
                                              int passes) {
  redisContext* r = redisConnectUnix(sock.c_str());
  if (r == nullptr || r->err) {
    std::string e = r ? r->errstr : "out of memory";
    if (r) redisFree(r);
    return UnavailableError("redis: " + e);
  }
  Buffer src(chunk), dst(chunk);
  auto t0 = Clock::now();
  for (int i = 0; i < count; ++i) {
    auto* rep = static_cast<redisReply*>(
        redisCommand(r, "SET chunk:%d %b", i, src.data(), static_cast<size_t>(chunk)));
    if (rep == nullptr) {
      redisFree(r);
      return InternalError("redis SET failed");
    }
    freeReplyObject(rep);
  }
  double put = Gbps(chunk * count, Seconds(t0, Clock::now()));
  t0 = Clock::now();
  uint64_t bytes = 0;
  for (int p = 0; p < passes; ++p) {
    for (int i = 0; i < count; ++i) {
      auto* rep = static_cast<redisReply*>(redisCommand(r, "GET chunk:%d", i));
      if (rep == nullptr || rep->type != REDIS_REPLY_STRING) {
        if (rep) freeReplyObject(rep);
        redisFree(r);
        return InternalError("redis GET failed");
      }
      // The value lands in the caller's memory, as twd's gets do.
      std::memcpy(dst.data(), rep->str, std::min<size_t>(rep->len, chunk));
      bytes += rep->len;
      freeReplyObject(rep);
    }
  }
  double get = Gbps(bytes, Seconds(t0, Clock::now()));
  redisFree(r);
  return std::make_pair(put, get);
}
#endif

// The latency figures, on an idle twd (no background work yet: the write-back and eviction
// that the bulk phases start would share its CPUs), placed like the ping-pong reference.
void MeasureLatency(Reporter& out, Client& c, const Chain& lookup, const ServiceBenchOptions& o,
                    const Placement& where, pid_t twd, double pp50) {
  where.PinSelf();
  where.PinFar(twd);
  // CPU per request on each side (µs), over the `o.lookups` requests since `client0`/`twd0`.
  auto cpu = [&](const std::string& name, uint64_t client0, uint64_t twd0) {
    const double n = std::max(1, o.lookups) * 1e3;
    out.Figure(name + "_cpu_client", double(ProcessCpuNs(0) - client0) / n, "us");
    out.Figure(name + "_cpu_twd", double(ProcessCpuNs(twd) - twd0) / n, "us");
  };
  // Round trip through twd with an empty request: the floor under every operation.
  {
    std::vector<double> lat;
    const uint64_t client0 = ProcessCpuNs(0), twd0 = ProcessCpuNs(twd);
    for (int i = 0; i < o.lookups; ++i) {
      auto t0 = Clock::now();
      if (!c.Ping().ok()) break;
      lat.push_back(Seconds(t0, Clock::now()) * 1e6);
    }
    cpu("service_ping", client0, twd0);
    out.Compare("service_ping_p50", Percentile(lat, 0.5), "us", pp50, 1.2, true);
    out.Figure("service_ping_p99", Percentile(lat, 0.99), "us");
  }
  // Lookup of a 512-chunk chain (values of 4 KiB; every chunk stored, with durability disk
  // so that no write-back runs during the measurement).
  auto lk = PutChain(c, lookup, 4096, o.depth, client::Durability::kDisk);
  if (lk.ok()) {
    std::vector<double> lat;
    size_t prefix = 0;
    const uint64_t client0 = ProcessCpuNs(0), twd0 = ProcessCpuNs(twd);
    for (int i = 0; i < o.lookups; ++i) {
      auto t0 = Clock::now();
      auto r = c.LookupChainOf(lookup.digest, lookup.keys);
      lat.push_back(Seconds(t0, Clock::now()) * 1e6);
      if (r.ok()) prefix = r->prefix;
    }
    cpu("service_lookup_512", client0, twd0);
    if (prefix != lookup.keys.size()) {
      std::cerr << "tw-bench service: lookup found " << prefix << " of 512 chunks\n";
    }
    out.Compare("service_lookup_512_p50", Percentile(lat, 0.5), "us", pp50, 1.5, true);
    out.Figure("service_lookup_512_p99", Percentile(lat, 0.99), "us");
  } else {
    std::cerr << "tw-bench service: lookup chain: " << lk.status().message() << "\n";
  }
  where.Unpin(twd);
  where.UnpinSelf();
}

// DRAM gets from one client (against memcpy with one thread and with as many threads as twd
// has workers, the latter measured right before and after the gets), then from 1, 4 and 16
// concurrent clients. Returns the one-client GB/s.
double MeasureDramGets(Reporter& out, Client& c, const Chain& mem, const std::string& sock,
                       const Namespace& ns, const ServiceBenchOptions& o, double memcpy_gbps,
                       double stream_gbps) {
  const uint64_t chunk = o.chunk_bytes;
  const int workers = TwdWorkers(o);
  const int reps = std::max(2, o.chunks * o.passes / workers);
  GetChain(c, mem, chunk, o.depth, 1);  // warm
  const double parallel_before = ParallelMemcpyGBps(chunk, workers, reps);
  GetStats g = GetChain(c, mem, chunk, o.depth, o.passes);
  const double parallel_after = ParallelMemcpyGBps(chunk, workers, reps);
  Warn("get from DRAM", g);
  const double gbps = Gbps(g.bytes, g.seconds);
  const double parallel = std::max(parallel_before, parallel_after);
  out.Figure(StrCat("ref_memcpy_", workers, "_threads"), parallel, "GB/s");
  out.Compare("service_get_dram", gbps, "GB/s", parallel, 0.8, false);
  out.Versus("service_get_dram_vs_memcpy_1_thread", gbps, "GB/s", memcpy_gbps);
  out.Compare("service_get_dram_vs_unix_stream", gbps, "GB/s", stream_gbps, 1.3, false);
  // Concurrent clients, each with its own connection and arena.
  for (int clients : {1, 4, 16}) {
    // Connections (and their pre-faulted arenas) are set up before the clock starts.
    std::vector<std::unique_ptr<Client>> conns;
    for (int t = 0; t < clients; ++t) {
      auto cc = Connect(sock, chunk * 2, {ns});
      if (!cc.ok()) break;
      conns.push_back(std::move(*cc));
    }
    if (static_cast<int>(conns.size()) != clients) {
      std::cerr << "tw-bench service: could not open " << clients << " connections\n";
      break;
    }
    std::vector<std::thread> threads;
    std::atomic<uint64_t> bytes{0}, misses{0};
    auto t0 = Clock::now();
    for (int t = 0; t < clients; ++t) {
      threads.emplace_back([&, t] {
        Chain mine = mem;
        std::rotate(mine.keys.begin(), mine.keys.begin() + (t % o.chunks), mine.keys.end());
        GetStats gs = GetChain(*conns[t], mine, chunk, 2, o.passes);
        bytes += gs.bytes;
        misses += gs.misses;
      });
    }
    for (auto& th : threads) th.join();
    if (misses.load() != 0) {
      std::cerr << "tw-bench service: " << misses.load() << " misses with " << clients
                << " clients\n";
    }
    out.Figure(StrCat("service_get_dram_clients_", clients),
               Gbps(bytes.load(), Seconds(t0, Clock::now())), "GB/s");
  }
  return gbps;
}

int RunServiceBench(const ServiceBenchOptions& o) {
  Reporter out;
  const uint64_t chunk = o.chunk_bytes;
  const int n = o.chunks;
  std::string dir = o.data_dir;
  bool own_dir = dir.empty();
  if (own_dir) {
    char tmpl[] = "/var/tmp/tw-bench-service.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      std::cerr << "tw-bench service: mkdtemp: " << strerror(errno) << "\n";
      return 1;
    }
    dir = tmpl;
  }
  char run_tmpl[] = "/tmp/tw-bench-sock.XXXXXX";  // short: socket paths are limited
  std::string run = mkdtemp(run_tmpl) ? run_tmpl : dir;
  // twd's store lives in DIR/twd-data: removed before and after, also in a --data-dir given,
  // or the next run would find every chunk already stored (puts answering `exists`).
  const std::string data = dir + "/twd-data";
  // Raw O_DIRECT with the cadence of durable puts: one fdatasync per chunk-sized batch. The
  // file stays until the NVMe gets, whose reference reads it.
  DirectIoShape shape;
  shape.path = dir + "/raw-direct.bin";
  shape.batch = chunk;
  shape.io_size = std::min<uint64_t>(shape.io_size, chunk);
  shape.file_bytes = chunk * static_cast<uint64_t>(n);
  auto cleanup = [&] {
    std::error_code ec;
    unlink(shape.path.c_str());
    if (own_dir) std::filesystem::remove_all(dir, ec);
    std::filesystem::remove_all(data, ec);
    std::filesystem::remove_all(run, ec);
  };

  // References.
  double memcpy_gbps = 0, stream_gbps = 0;
  if (!o.latency_only) {
    memcpy_gbps = MemcpyGBps(chunk, std::max(4, n * o.passes));
    out.Figure("ref_memcpy", memcpy_gbps, "GB/s");
    stream_gbps = SocketStreamGbps(chunk, std::max(4, n * o.passes));
    out.Figure("ref_unix_stream", stream_gbps, "GB/s");
  }
  const Placement where(!o.float_cpus);
  out.Figure("latency_cross_cpu", where.pinned() ? 1 : 0, "bool");
  PingPong pp = PingPongUs(o.pings, where);
  double pp50 = Percentile(pp.latency_us, 0.5);
  out.Figure("ref_unix_pingpong_p50", pp50, "us");
  out.Figure("ref_unix_pingpong_p99", Percentile(pp.latency_us, 0.99), "us");
  out.Figure("ref_unix_pingpong_cpu_near", pp.cpu_near_us, "us");
  out.Figure("ref_unix_pingpong_cpu_far", pp.cpu_far_us, "us");

  // twd, phase A: DRAM large enough for the whole working set.
  std::string sock = run + "/twd.sock";
  std::string admin = run + "/twd-admin.sock";
  {
    std::error_code ec;
    std::filesystem::remove_all(data, ec);  // a store left by an interrupted run
  }
  std::filesystem::create_directories(data);
  const int runs = std::max(1, o.runs);
  const uint64_t working = chunk * static_cast<uint64_t>(n) * 2 + (uint64_t{64} << 20);
  const uint64_t disk_bytes = chunk * static_cast<uint64_t>(n) * static_cast<uint64_t>(runs);
  std::vector<std::string> twd_argv = {
      o.twd_path,
      "--socket",
      sock,
      "--admin-socket",
      admin,
      "--data-dir",
      data,
      "--dram-capacity",
      StrCat(working >> 20, "MiB"),
      "--nvme-capacity",
      StrCat((working * 4 + disk_bytes + (uint64_t{1} << 30)) >> 20, "MiB"),
      "--workers",
      StrCat(TwdWorkers(o)),
      "--metrics-address",
      "127.0.0.1:0",
      "--log-level",
      "warn"};
  const std::string log = dir + "/twd.log";
  int rc = 0;
  double put_memory_gbps = 0, get_dram_gbps = 0;
  Namespace ns_disk = BenchNamespace("disk", 256), ns_mem = BenchNamespace("memory", 256);
  Namespace ns_lookup = BenchNamespace("lookup", 16);
  std::vector<Chain> disk;  // one chain per alternated put run; the NVMe gets read the last
  for (int r = 0; r < runs; ++r) disk.push_back(MakeChain(ns_disk, n, 10 + r));
  {
    Child twd;
    Status s = twd.Start(twd_argv, sock, log);
    if (!s.ok()) {
      std::cerr << "tw-bench service: " << s.message() << "\n";
      cleanup();
      return 1;
    }
    Chain mem = MakeChain(ns_mem, n, 2);
    Chain lookup = MakeChain(ns_lookup, 512, 3);
    auto c = Connect(sock, chunk * o.depth, {ns_disk, ns_mem, ns_lookup});
    if (!c.ok()) {
      std::cerr << "tw-bench service: " << c.status().message() << "\n";
      cleanup();
      return 1;
    }
    MeasureLatency(out, **c, lookup, o, where, twd.pid(), pp50);
    if (o.latency_only) {
      (*c).reset();
      twd.Stop();
      out.Print(o.json);
      cleanup();
      return 0;
    }
    // Disk puts, each run next to a raw write + fdatasync of as many bytes.
    std::vector<Alternated> puts;
    for (int r = 0; r < runs && rc == 0; ++r) {
      // The reference goes first in odd runs, second in even ones: whatever one leaves
      // behind in the disk (a flush still running) weighs on both alike.
      StatusOr<double> raw = 0.0, put_s = 0.0;
      for (int step = 0; step < 2; ++step) {
        if ((step == 0) == (r % 2 == 0)) {
          // A new file each time: twd writes regions of its preallocated data file that were
          // never written (the file system converts unwritten extents as they are), and an
          // overwrite of the previous run's blocks skips that work.
          unlink(shape.path.c_str());
          raw = DirectWriteSyncGBps(shape);
        } else {
          put_s = PutChain(**c, disk[r], chunk, o.depth, client::Durability::kDisk);
        }
      }
      if (!raw.ok() || !put_s.ok()) {
        std::cerr << "tw-bench service: "
                  << (raw.ok() ? "put: " + std::string(put_s.status().message())
                               : "raw O_DIRECT write: " + std::string(raw.status().message()))
                  << "\n";
        rc = 1;
        break;
      }
      puts.push_back({Gbps(chunk * n, *put_s), *raw});
      // Every run starts from the same store: the chain of a run before the last (which the
      // NVMe gets read) is deleted, so DRAM and NVMe do not fill from run to run.
      if (r + 1 < runs) {
        std::vector<client::KeyRef> refs;
        for (const Key& k : disk[r].keys) refs.push_back({k, disk[r].digest});
        auto del = (*c)->Delete(refs);
        if (!del.ok()) std::cerr << "tw-bench service: delete: " << del.status().message() << "\n";
      }
    }
    ReportMedian(out, "service_put_disk", puts, 0.9);
    auto mem_s = PutChain(**c, mem, chunk, o.depth, client::Durability::kMemory);
    if (mem_s.ok()) {
      put_memory_gbps = Gbps(chunk * n, *mem_s);
      out.Figure("service_put_memory", put_memory_gbps, "GB/s");
      get_dram_gbps = MeasureDramGets(out, **c, mem, sock, ns_mem, o, memcpy_gbps, stream_gbps);
    }
    (*c).reset();
    twd.Stop();
  }
  // Phase B: twd restarted without a DRAM tier: every get reads NVMe (no promotion either),
  // each run right after a raw O_DIRECT read of as many bytes.
  if (rc == 0) {
    std::vector<std::string> argv_b = twd_argv;
    auto dram_flag = std::find(argv_b.begin(), argv_b.end(), "--dram-capacity");
    *(dram_flag + 1) = "0";
    Child twd;
    Status s = twd.Start(argv_b, sock, log);
    auto c2 =
        s.ok() ? Connect(sock, chunk * o.depth, {ns_disk}) : StatusOr<std::unique_ptr<Client>>(s);
    std::vector<Alternated> gets;
    // As many bytes in flight as twd's gets have: `depth` chunks, each in stripe-unit requests.
    DirectIoShape read_shape = shape;
    read_shape.batch = chunk * static_cast<uint64_t>(std::min(o.depth, n));
    read_shape.queue_depth = static_cast<uint32_t>(
        std::max<uint64_t>(shape.queue_depth, read_shape.batch / read_shape.io_size));
    for (int r = 0; c2.ok() && r < runs; ++r) {
      StatusOr<double> raw = 0.0;
      GetStats g;
      for (int step = 0; step < 2; ++step) {  // alternated as the puts are
        if ((step == 0) == (r % 2 == 0)) {
          raw = DirectReadGBps(read_shape);
        } else {
          g = GetChain(**c2, disk.back(), chunk, o.depth, 1);
        }
      }
      if (!raw.ok()) {
        std::cerr << "tw-bench service: raw O_DIRECT read: " << raw.status().message() << "\n";
        break;
      }
      if (g.dram != 0 || g.misses != 0) Warn("get from NVMe", g);
      gets.push_back({Gbps(g.bytes, g.seconds), *raw});
    }
    if (!c2.ok()) {
      std::cerr << "tw-bench service: restart: " << c2.status().message() << "\n";
      rc = 1;
    }
    ReportMedian(out, "service_get_nvme", gets, 0.9);
  }

  // Redis over a Unix socket, the same put/get workload.
#ifdef TW_HAVE_HIREDIS
  if (access(o.redis_path.c_str(), X_OK) == 0) {
    Child redis;
    std::string rsock = run + "/redis.sock";
    Status s = redis.Start(
        {o.redis_path, "--port", "0", "--unixsocket", rsock, "--save", "", "--appendonly", "no",
         "--dir", dir, "--proto-max-bulk-len", StrCat(std::max<uint64_t>(chunk * 2, 512u << 20))},
        rsock, dir + "/redis.log");
    auto r = s.ok() ? RedisGbps(rsock, chunk, n, o.passes) : StatusOr<std::pair<double, double>>(s);
    if (r.ok()) {
      out.Figure("redis_set", r->first, "GB/s");
      out.Figure("redis_get", r->second, "GB/s");
      out.Compare("service_put_memory_vs_redis_set", put_memory_gbps, "GB/s", r->first, 5, false);
      out.Compare("service_get_dram_vs_redis_get", get_dram_gbps, "GB/s", r->second, 5, false);
    } else {
      std::cerr << "tw-bench service: redis: " << r.status().message() << "\n";
    }
  } else {
    std::cerr << "tw-bench service: " << o.redis_path << " not found: Redis comparison skipped\n";
  }
#else
  std::cerr << "tw-bench service: built without hiredis: Redis comparison skipped\n";
#endif
  out.Print(o.json);
  cleanup();
  return rc;
}

}  // namespace

Command AddServiceCommand(CLI::App& app) {
  auto o = std::make_shared<ServiceBenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "service",
      "twd as a service (separate process) vs memcpy, a bare Unix-socket stream and "
      "ping-pong, raw O_DIRECT I/O and redis-server, measured in the same run");
  cmd->add_option("--twd", o->twd_path, "twd binary (default: twd next to tw-bench)");
  cmd->add_option("--redis-server", o->redis_path, "redis-server binary");
  cmd->add_option("--data-dir", o->data_dir,
                  "directory on the NVMe to measure (default: a "
                  "temporary directory under /var/tmp)");
  cmd->add_option("--chunk-bytes", o->chunk_bytes, "value size in bytes (default 32 MiB)")
      ->check(CLI::Range(uint64_t{4096}, uint64_t{1} << 30));
  cmd->add_option("--chunks", o->chunks, "chunks in the working set")->check(CLI::Range(1, 4096));
  cmd->add_option("--passes", o->passes, "get passes over the working set")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--depth", o->depth, "requests in flight per client")->check(CLI::Range(1, 64));
  cmd->add_option("--lookups", o->lookups, "lookups of the 512-chunk chain")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--pings", o->pings, "reference ping-pong round trips")
      ->check(CLI::Range(1, 10000000));
  cmd->add_option("--runs", o->runs,
                  "alternated runs of the disk put and the NVMe get with their references "
                  "(the median ratio is reported)")
      ->check(CLI::Range(1, 100));
  cmd->add_option("--workers", o->workers,
                  "twd's request workers, and the threads of the parallel memcpy reference "
                  "(default: twd's own default, one per CPU in [4, 32])")
      ->check(CLI::Range(0, 64));
  cmd->add_flag("--latency-only", o->latency_only,
                "only the ping-pong reference, PING and the 512-chunk lookup");
  cmd->add_flag("--json", o->json, "one JSON object per line");
  cmd->add_flag("--float-cpus", o->float_cpus,
                "measure latencies wherever the scheduler runs each end (default: the load on "
                "one CPU, the echo process and twd on the others)");
  return Command{cmd, [o] {
                   if (o->twd_path.empty()) {
                     std::error_code ec;
                     auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
                     o->twd_path = (self.parent_path() / "twd").string();
                   }
                   return RunServiceBench(*o);
                 }};
}

}  // namespace tw::bench
