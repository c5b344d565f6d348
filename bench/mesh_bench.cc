// `tw-bench mesh`: the mesh between two twd, each in its own network namespace joined by a
// veth pair (netns_pair.h), with its references measured between the same two namespaces in
// the same run. Needs root.
//
//   a ── veth ── b        twd "a" holds the chunks; the client talks to twd "b" only
//
// - Remote get: chunks of 32 MiB put on a, got through b (mesh.cache_remote_hits off, so
//   every get crosses the veth), against a raw TCP stream of as many bytes a → b over one
//   connection; alternated `--runs` times, the run of median ratio reported (target ≥ 0.85).
// - Lookup of a 512-chunk chain stored on a, through b: p50 against the p50 of a local lookup
//   of a 512-chunk chain stored on b plus 1.5 × the p50 of a TCP ping-pong (64 bytes) between
//   the namespaces; local and remote lookups interleaved, the ping-pong measured before and
//   after them (target: ratio ≤ 1).
// - CPU per GB moved and per lookup, of each twd and of the references' ends: what the
//   wall-clock ratios become on a machine whose CPUs are shared.
// Nothing here passes or fails; the targets are printed after the table.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "command.h"
#include "netns_pair.h"
#include "service_util.h"
#include "socket_reference.h"
#include "tw/client/client.h"
#include "tw/common/strings.h"

namespace tw::bench {
namespace {

using client::Client;

struct MeshBenchOptions {
  std::string twd_path;                       // default: twd next to tw-bench
  uint64_t chunk_bytes = uint64_t{32} << 20;  // value size of the remote gets
  int chunks = 8;                             // chunks held by a
  int passes = 2;                             // get passes over them per run
  int depth = 2;                              // gets in flight
  int runs = 3;                               // alternated stream / get runs
  int lookups = 300;                          // of each chain (local and remote)
  int pings = 3000;                           // per ping-pong batch (two batches)
  std::string peer_timeout = "10s";           // mesh.peer_timeout of both twd
  bool references_only = false;               // the TCP references, no twd
  bool json = false;
};

constexpr uint32_t kMeshPort = 7470;

Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  f.close();
  if (!f) return InternalError("cannot write " + path);
  return OkStatus();
}

// Polls `done` every 20 ms for up to `seconds`; false when it never held.
template <typename F>
bool WaitFor(F done, double seconds) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

// CPU of this process, threads that have exited included (the references' threads do before
// they are counted; /proc/self/task no longer lists them).
uint64_t SelfCpuNs() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto ns = [](const timeval& t) {
    return static_cast<uint64_t>(t.tv_sec) * 1000000000 + static_cast<uint64_t>(t.tv_usec) * 1000;
  };
  return ns(u.ru_utime) + ns(u.ru_stime);
}

size_t Prefix(Client& c, const Chain& chain) {
  auto r = c.LookupChainOf(chain.digest, chain.keys);
  return r.ok() ? r->prefix : 0;
}

int RunMeshBench(const MeshBenchOptions& o) {
  const char* me = "tw-bench mesh: ";
  auto net_or = NetnsPair::Create();
  if (!net_or.ok()) {
    std::cerr << me << net_or.status().ToString() << "\n";
    return 1;
  }
  // Destroyed last: the twd children below stop before their namespaces go.
  std::unique_ptr<NetnsPair> net = std::move(*net_or);
  char tmpl[] = "/tmp/tw-bench-mesh.XXXXXX";  // short: socket paths are limited
  if (mkdtemp(tmpl) == nullptr) {
    std::cerr << me << "mkdtemp: " << strerror(errno) << "\n";
    return 1;
  }
  const std::string dir = tmpl;
  struct RemoveDir {
    std::string dir;
    ~RemoveDir() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } remove_dir{dir};

  if (o.references_only) {
    Reporter out;
    auto stream = TcpStreamGbps(*net, o.chunk_bytes, o.chunks * o.passes);
    auto pp = TcpPingPongUs(*net, o.pings);
    if (!stream.ok() || !pp.ok()) {
      std::cerr << me << (stream.ok() ? pp.status() : stream.status()).ToString() << "\n";
      return 1;
    }
    out.Figure("ref_tcp_stream", *stream, "GB/s");
    out.Figure("ref_tcp_pingpong_p50", Percentile(*pp, 0.5), "us");
    out.Figure("ref_tcp_pingpong_p99", Percentile(*pp, 0.99), "us");
    out.Print(o.json);
    return 0;
  }
  const std::string peers = dir + "/peers.json";
  Status st = WriteFile(peers, StrCat(R"({"peers":[{"node":"a","address":")", net->address(0),
                                      R"(","port":)", kMeshPort, R"(},{"node":"b","address":")",
                                      net->address(1), R"(","port":)", kMeshPort, "}]}\n"));
  const uint64_t chunk = o.chunk_bytes;
  // a holds the big chunks and a 512-chunk chain; b a 512-chunk chain (4 KiB values).
  const uint64_t dram_a =
      ((chunk * static_cast<uint64_t>(o.chunks) + (uint64_t{64} << 20)) >> 21 << 21) +
      (uint64_t{2} << 20);
  const uint64_t dram_b = uint64_t{64} << 20;
  Child twd[2];
  std::string sock[2];
  for (int end = 0; end < 2 && st.ok(); ++end) {
    const std::string node = end == 0 ? "a" : "b";
    const std::string cfg = StrCat(dir, "/", node, ".yaml");
    sock[end] = StrCat(dir, "/", node, ".sock");
    st = WriteFile(cfg, StrCat("mesh:\n  enabled: true\n  port: ", kMeshPort, "\n  peers_file: ",
                               peers, "\n  node_name: ", node, "\n  peer_timeout: ", o.peer_timeout,
                               "\n  cache_remote_hits: false\n"));
    if (!st.ok()) break;
    std::vector<std::string> argv = net->ExecPrefix(end);
    for (const std::string& a :
         {o.twd_path, std::string("--config"), cfg, std::string("--socket"), sock[end],
          std::string("--admin-socket"), StrCat(dir, "/", node, "-admin.sock"),
          std::string("--dram-capacity"), StrCat((end == 0 ? dram_a : dram_b) >> 20, "MiB"),
          std::string("--metrics-address"), std::string("127.0.0.1:9400"),
          std::string("--log-level"), std::string("warn")}) {
      argv.push_back(a);
    }
    // The log outlives the temporary directory: it says why a twd did not start.
    const std::string log = StrCat("/tmp/tw-bench-mesh-", node, ".log");
    unlink(log.c_str());
    st = twd[end].Start(argv, sock[end], log);
  }
  const Namespace ns = BenchNamespace("mesh", 256);
  std::unique_ptr<Client> ca, cb;
  if (st.ok()) {
    auto c = Connect(sock[0], chunk * static_cast<uint64_t>(o.depth), {ns});
    st = c.status();
    if (c.ok()) ca = std::move(*c);
  }
  if (st.ok()) {
    auto c = Connect(sock[1], chunk * static_cast<uint64_t>(o.depth), {ns});
    st = c.status();
    if (c.ok()) cb = std::move(*c);
  }
  const Chain big = MakeChain(ns, static_cast<size_t>(o.chunks), 1);
  const Chain remote = MakeChain(ns, 512, 2);
  const Chain local = MakeChain(ns, 512, 3);
  for (auto [c, chain, size] :
       {std::tuple{ca.get(), &big, chunk}, std::tuple{ca.get(), &remote, uint64_t{4096}},
        std::tuple{cb.get(), &local, uint64_t{4096}}}) {
    if (!st.ok()) break;
    st = PutChain(*c, *chain, size, o.depth, client::Durability::kMemory).status();
  }
  if (!st.ok()) {
    std::cerr << me << st.ToString() << " (twd logs: /tmp/tw-bench-mesh-{a,b}.log)\n";
    return 1;
  }
  // The announcements reach their homes asynchronously.
  if (!WaitFor([&] { return Prefix(*cb, big) == big.keys.size(); }, 60) ||
      !WaitFor([&] { return Prefix(*cb, remote) == remote.keys.size(); }, 60)) {
    std::cerr << me << "b does not find a's chunks (" << Prefix(*cb, big) << " of "
              << big.keys.size() << ", " << Prefix(*cb, remote)
              << " of 512): is twd built with the mesh? (logs: /tmp/tw-bench-mesh-{a,b}.log)\n";
    return 1;
  }

  Reporter out;
  // Remote gets against the raw TCP stream, alternated.
  std::vector<Alternated> runs;
  const int count = o.chunks * o.passes;
  const pid_t pid_a = twd[0].pid(), pid_b = twd[1].pid();
  // CPU (every thread, user + system) per GB moved: the stream's two ends (threads of this
  // process), and twd a, twd b and this client for the gets. Unlike the wall-clock ratio, a
  // loaded machine barely inflates these.
  uint64_t cpu_stream = 0, cpu_a = 0, cpu_b = 0, cpu_client = 0, bytes = 0;
  GetChain(*cb, big, chunk, o.depth, 1);  // warm: connections, page tables
  for (int r = 0; r < std::max(1, o.runs); ++r) {
    const uint64_t s0 = SelfCpuNs();
    auto ref = TcpStreamGbps(*net, chunk, count);
    cpu_stream += SelfCpuNs() - s0;
    if (!ref.ok()) {
      std::cerr << me << "TCP stream: " << ref.status().ToString() << "\n";
      return 1;
    }
    const uint64_t a0 = ProcessCpuNs(pid_a), b0 = ProcessCpuNs(pid_b), c0 = ProcessCpuNs(0);
    GetStats g = GetChain(*cb, big, chunk, o.depth, o.passes);
    cpu_a += ProcessCpuNs(pid_a) - a0;
    cpu_b += ProcessCpuNs(pid_b) - b0;
    cpu_client += ProcessCpuNs(0) - c0;
    bytes += g.bytes;
    if (g.misses != 0 || g.peer != static_cast<uint64_t>(count)) {
      std::cerr << me << "remote gets: " << g.peer << " from the peer, " << g.dram + g.nvme
                << " local, " << g.misses << " misses"
                << (g.misses ? " (last: " + g.last_miss + ")" : "") << "\n";
    }
    runs.push_back({Gbps(g.bytes, g.seconds), *ref});
  }
  std::vector<double> streams;
  for (const Alternated& a : runs) streams.push_back(a.reference);
  out.Figure("ref_tcp_stream", Percentile(streams, 0.5), "GB/s");
  ReportMedian(out, "mesh_get_remote", runs, 0.85);
  const double stream_gb = static_cast<double>(chunk) * count * std::max(1, o.runs) / 1e9;
  const double got_gb = std::max(1e-9, static_cast<double>(bytes) / 1e9);
  out.Figure("ref_tcp_stream_cpu", static_cast<double>(cpu_stream) / 1e9 / stream_gb, "s/GB");
  out.Figure("mesh_get_remote_cpu_twd_a", static_cast<double>(cpu_a) / 1e9 / got_gb, "s/GB");
  out.Figure("mesh_get_remote_cpu_twd_b", static_cast<double>(cpu_b) / 1e9 / got_gb, "s/GB");
  out.Figure("mesh_get_remote_cpu_client", static_cast<double>(cpu_client) / 1e9 / got_gb, "s/GB");

  // Lookups: ping-pong, interleaved local and remote lookups, ping-pong again.
  auto pp1 = TcpPingPongUs(*net, o.pings);
  std::vector<double> lat_local, lat_remote;
  size_t prefix_local = 0, prefix_remote = 0;
  // CPU of twd a and twd b during the local [0] and the remote [1] lookups.
  uint64_t lk_cpu_a[2] = {0, 0}, lk_cpu_b[2] = {0, 0};
  for (int i = 0; i < o.lookups; ++i) {
    for (int which = 0; which < 2; ++which) {
      const Chain& chain = which == 0 ? local : remote;
      const uint64_t a0 = ProcessCpuNs(pid_a), b0 = ProcessCpuNs(pid_b);
      auto t0 = Clock::now();
      auto r = cb->LookupChainOf(chain.digest, chain.keys);
      (which == 0 ? lat_local : lat_remote).push_back(Seconds(t0, Clock::now()) * 1e6);
      lk_cpu_a[which] += ProcessCpuNs(pid_a) - a0;
      lk_cpu_b[which] += ProcessCpuNs(pid_b) - b0;
      (which == 0 ? prefix_local : prefix_remote) = r.ok() ? r->prefix : 0;
    }
  }
  auto pp2 = TcpPingPongUs(*net, o.pings);
  if (!pp1.ok() || !pp2.ok()) {
    std::cerr << me << "TCP ping-pong: " << (pp1.ok() ? pp2 : pp1).status().ToString() << "\n";
    return 1;
  }
  if (prefix_local != 512 || prefix_remote != 512) {
    std::cerr << me << "lookups found " << prefix_local << " (local) and " << prefix_remote
              << " (remote) of 512 chunks\n";
  }
  std::vector<double> pp = *pp1;
  pp.insert(pp.end(), pp2->begin(), pp2->end());
  const double pp50 = Percentile(pp, 0.5);
  const double local50 = Percentile(lat_local, 0.5);
  out.Figure("ref_tcp_pingpong_p50", pp50, "us");
  out.Figure("ref_tcp_pingpong_p99", Percentile(pp, 0.99), "us");
  out.Figure("mesh_lookup_512_local_p50", local50, "us");
  out.Compare("mesh_lookup_512_remote_p50", Percentile(lat_remote, 0.5), "us", local50 + 1.5 * pp50,
              1.0, true);
  out.Figure("mesh_lookup_512_remote_p99", Percentile(lat_remote, 0.99), "us");
  const double n = std::max(1, o.lookups) * 1e3;
  out.Figure("mesh_lookup_512_local_cpu_twd_b", static_cast<double>(lk_cpu_b[0]) / n, "us");
  out.Figure("mesh_lookup_512_remote_cpu_twd_b", static_cast<double>(lk_cpu_b[1]) / n, "us");
  out.Figure("mesh_lookup_512_remote_cpu_twd_a", static_cast<double>(lk_cpu_a[1]) / n, "us");
  out.Print(o.json);
  return 0;
}

}  // namespace

Command AddMeshCommand(CLI::App& app) {
  auto o = std::make_shared<MeshBenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "mesh",
      "two twd in two network namespaces over a veth pair: remote gets vs a raw TCP stream, "
      "remote lookups vs local lookups and a TCP ping-pong, measured in the same run (root)");
  cmd->add_option("--twd", o->twd_path, "twd binary (default: twd next to tw-bench)");
  cmd->add_option("--chunk-bytes", o->chunk_bytes, "value size of the remote gets")
      ->check(CLI::Range(uint64_t{4096}, uint64_t{256} << 20))
      ->capture_default_str();
  cmd->add_option("--chunks", o->chunks, "chunks held by the other node")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--passes", o->passes, "get passes over them per run")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--depth", o->depth, "gets in flight")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--runs", o->runs,
                  "alternated runs of the TCP stream and the remote gets (median ratio)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->add_option("--lookups", o->lookups, "lookups of each 512-chunk chain")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--pings", o->pings, "TCP ping-pong round trips per batch (two batches)")
      ->check(CLI::Range(1, 10000000))
      ->capture_default_str();
  cmd->add_option("--peer-timeout", o->peer_timeout, "mesh.peer_timeout of both twd")
      ->capture_default_str();
  cmd->add_flag("--references-only", o->references_only,
                "only the TCP stream and ping-pong between the namespaces (no twd)");
  cmd->add_flag("--json", o->json, "one JSON object per line");
  return Command{cmd, [o] {
                   if (o->twd_path.empty()) {
                     std::error_code ec;
                     auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
                     o->twd_path = (self.parent_path() / "twd").string();
                   }
                   return RunMeshBench(*o);
                 }};
}

}  // namespace tw::bench
