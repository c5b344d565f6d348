// The soak run (soak.h).
#include "soak.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "harness.h"
#include "tw/common/strings.h"
#include "workload.h"

namespace tw::torture {
namespace {

// The q-quantile of the calls counted in `now` but not in `before`, in milliseconds.
double QuantileMs(const uint64_t* now, const uint64_t* before, double q) {
  uint64_t total = 0;
  for (int b = 0; b < kLatencyBuckets; ++b) total += now[b] - before[b];
  if (total == 0) return 0;
  const uint64_t want = uint64_t(std::ceil(q * double(total)));
  uint64_t seen = 0;
  for (int b = 0; b < kLatencyBuckets; ++b) {
    seen += now[b] - before[b];
    // The bucket's geometric middle: within 9% of any latency in it.
    if (seen >= want) return BucketMicros(b) * std::exp2(0.125) / 1000.0;
  }
  return BucketMicros(kLatencyBuckets - 1) / 1000.0;
}

}  // namespace

int RunSoak(const SoakOptions& so) {
  // Working set: at least 3x the DRAM tier and 1.5x the NVMe tier. A value averages 32 KiB
  // in DRAM and 44 KiB on NVMe (each segment starts on a 4 KiB boundary, plus the header).
  const double chunks = std::max(3.0 * double(so.dram_mib << 20) / (32 << 10),
                                 1.5 * double(so.nvme_mib << 20) / (44 << 10));
  HarnessOptions o;
  o.self = so.self;
  o.twd = so.twd;
  o.dir = so.dir;
  o.seed = so.seed;
  o.clients = so.clients;
  o.dram_capacity = so.dram_mib << 20;
  o.nvme_capacity = so.nvme_mib << 20;
  o.chains = uint32_t(std::ceil(chunks / double(so.clients * kRanks * 4)));
  o.short_deadline_pct = 5;
  const uint64_t ws_mib = uint64_t(o.chains) * so.clients * kRanks * 4 * 32 / 1024;
  std::printf(
      "soak: %u clients, %.1f min, DRAM %llu MiB, NVMe %llu MiB, working set %llu MiB "
      "(%u chains of 4 chunks per client and rank)\n",
      so.clients, so.minutes, (unsigned long long)so.dram_mib, (unsigned long long)so.nvme_mib,
      (unsigned long long)ws_mib, o.chains);
  std::fflush(stdout);
  std::ofstream out;
  if (!so.out.empty()) out.open(so.out);
  Tally t;
  Harness h(o);
  if (!h.StartTwd(t).ok()) {
    for (const std::string& f : t.failures) std::fprintf(stderr, "soak: %s\n", f.c_str());
    return 1;
  }
  const ProcUse base = h.TwdUse();
  h.SpawnWorkers(0);
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double>(so.minutes * 60));
  WorkerStats prev = h.SumWorkerStats();
  auto prev_t = start;
  for (int i = 1;; ++i) {
    const auto next = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                  std::chrono::duration<double>(so.sample_seconds * i));
    if (next > end + std::chrono::seconds(1)) break;
    std::this_thread::sleep_until(next);
    const WorkerStats now = h.SumWorkerStats();
    const ProcUse use = h.TwdUse();
    const double secs = std::chrono::duration<double>(next - prev_t).count();
    nlohmann::ordered_json j;
    j["t_s"] = std::chrono::duration<double>(next - start).count();
    j["rss_mib"] = double(use.rss_kib) / 1024;
    j["anon_mib"] = double(use.anon_kib) / 1024;
    j["fds"] = use.fds + use.rings;
    j["threads"] = use.threads;
    j["ops_per_s"] = double(now.ops - prev.ops) / secs;
    j["lookup_p50_ms"] = QuantileMs(now.lookup_us, prev.lookup_us, 0.5);
    j["lookup_p99_ms"] = QuantileMs(now.lookup_us, prev.lookup_us, 0.99);
    j["get_p50_ms"] = QuantileMs(now.get_us, prev.get_us, 0.5);
    j["get_p99_ms"] = QuantileMs(now.get_us, prev.get_us, 0.99);
    j["chunks_verified"] = now.chunks_verified;
    j["wrong"] = now.wrong_bytes + now.late_writes;
    auto stats = h.Stats();
    if (stats.ok()) {
      auto sj = nlohmann::json::parse(*stats, nullptr, false);
      if (!sj.is_discarded() && sj.contains("tiers")) {
        for (const char* tier : {"dram", "nvme"}) {
          if (!sj["tiers"].contains(tier)) continue;
          const auto& tj = sj["tiers"][tier];
          j[std::string(tier) + "_used_mib"] =
              double(tj.value("used_bytes", uint64_t{0})) / (1 << 20);
          j[std::string(tier) + "_evictions"] = tj.value("evictions", uint64_t{0});
        }
      }
      if (!sj.is_discarded()) j["live_leases"] = sj.value("live_leases", uint64_t{0});
    }
    const std::string line = j.dump();
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    if (out) out << line << "\n" << std::flush;
    prev = now;
    prev_t = next;
  }
  h.EndWorkers();
  h.CheckBaseline(base, uint64_t(1) << 20, t);
  h.CollectWorkerStats(t);
  h.DrainProblems(t);
  nlohmann::ordered_json s;
  s["ops"] = t.ops;
  s["chunks_verified"] = t.chunks_verified;
  s["wrong"] = t.wrong;
  s["notes"] = t.notes;
  s["failures"] = t.failures;
  nlohmann::ordered_json summary;
  summary["summary"] = s;
  std::printf("%s\n", summary.dump().c_str());
  if (out) out << summary.dump() << "\n";
  h.KillTwd(true);
  return t.failures.empty() ? 0 : 1;
}

}  // namespace tw::torture
