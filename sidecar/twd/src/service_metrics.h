// ServiceMetrics: the Prometheus metrics twd exports (`tokenwarehouse_*`). The `namespace`
// label is bounded by a NamespaceLabeller: the busiest namespaces by recent traffic get their
// own label, the rest count as "other". Families are created once per process (the registry is
// global); every ServiceCore in the process shares them. The core counts each request-level
// event here and in its own STATS counters at the same point, so STATS and /metrics agree;
// the store's tier counters are mirrored by UpdateFromStore on each tick. The label values
// are the ToString spellings of tw/common/cache_types.h.
//
// Metrics:
//   tokenwarehouse_get_hits_total{tier,namespace}          chunks served
//   tokenwarehouse_get_misses_total{reason,namespace}      chunks not served, by reason
//   tokenwarehouse_lookup_chunks_total{result}              chunks found/not found by lookups
//   tokenwarehouse_puts_total{result,namespace}             put results
//   tokenwarehouse_bytes_out_total{tier}                    bytes copied into client arenas
//   tokenwarehouse_bytes_in_total                           bytes taken from client arenas
//   tokenwarehouse_tokens_served_total{namespace}           prefill tokens avoided
//   tokenwarehouse_request_duration_seconds{op}             latency per op (histogram)
//   tokenwarehouse_connected_clients                        open client connections (gauge)
//   tokenwarehouse_protocol_errors_total{kind}              rejected frames and requests
//   tokenwarehouse_tier_used_bytes / _free_bytes / _capacity_bytes / _chunks {tier}  (gauges)
//   tokenwarehouse_evictions_total{tier}, tokenwarehouse_io_errors_total{tier},
//   tokenwarehouse_corrupt_total{tier}, tokenwarehouse_dropped_unwritten_total,
//   tokenwarehouse_nvme_reclaim_rewrites_total, tokenwarehouse_promotions_total  (from the store)
//
// Threading: everything is thread-safe. Lifetime: process-wide singleton.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "namespace_labeller.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "tw/common/keys.h"
#include "tw/protocol/frame.h"
#include "tw/store/store.h"

namespace tw::twd {

class ServiceMetrics {
 public:
  static ServiceMetrics& Get();

  // The label `digest` is counted under now (see namespace_labeller.h).
  std::string NamespaceLabel(const Key& digest);
  void SetMaxNamespaceLabels(uint32_t max);

  // Each counts one chunk of traffic for namespace `ns`.
  void GetHit(store::Tier tier, const Key& ns, uint64_t bytes, uint32_t tokens);
  void GetMiss(store::MissReason reason, const Key& ns);
  void LookupChunks(uint64_t found, uint64_t missing);
  void PutResult(::tw::PutResult result, const Key& ns, uint64_t bytes);
  void Latency(protocol::Opcode op, double seconds);
  void ProtocolError(std::string_view kind);
  void ClientsDelta(int delta);
  // Publishes the store's gauges and advances the counters mirrored from it.
  void UpdateFromStore(const store::StoreStats& stats);

 private:
  ServiceMetrics();

  NamespaceLabeller labeller_{16};
  std::mutex mu_;
  store::StoreStats last_;  // GUARDED_BY(mu_): counters already mirrored

  prometheus::Family<prometheus::Counter>* hits_;
  prometheus::Family<prometheus::Counter>* misses_;
  prometheus::Family<prometheus::Counter>* lookup_chunks_;
  prometheus::Family<prometheus::Counter>* puts_;
  prometheus::Family<prometheus::Counter>* bytes_out_;
  prometheus::Counter* bytes_in_;
  prometheus::Family<prometheus::Counter>* tokens_;
  prometheus::Family<prometheus::Histogram>* latency_;
  prometheus::Gauge* clients_;
  prometheus::Family<prometheus::Counter>* protocol_errors_;
  prometheus::Family<prometheus::Gauge>* used_;
  prometheus::Family<prometheus::Gauge>* free_;
  prometheus::Family<prometheus::Gauge>* capacity_;
  prometheus::Family<prometheus::Gauge>* chunks_;
  prometheus::Family<prometheus::Counter>* evictions_;
  prometheus::Family<prometheus::Counter>* io_errors_;
  prometheus::Family<prometheus::Counter>* corrupt_;
  prometheus::Counter* dropped_unwritten_;
  prometheus::Counter* reclaim_rewrites_;
  prometheus::Counter* promotions_;

  // Series of the per-request metrics, looked up once (Family::Add builds a label map and
  // takes the family's lock) and kept: families never remove them. Set on first use, so a
  // series still appears only once it counted something.
  std::atomic<prometheus::Counter*> lookup_hit_{nullptr};
  std::atomic<prometheus::Counter*> lookup_miss_{nullptr};
  std::array<std::atomic<prometheus::Histogram*>, 128> latency_by_op_{};  // by opcode
};

}  // namespace tw::twd
