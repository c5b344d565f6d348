#include "service_metrics.h"

#include "tw/common/metrics.h"

namespace tw::twd {

ServiceMetrics& ServiceMetrics::Get() {
  static ServiceMetrics* m = new ServiceMetrics();  // never destroyed, like the registry
  return *m;
}

ServiceMetrics::ServiceMetrics() {
  using metrics::CounterFamily;
  using metrics::GaugeFamily;
  hits_ = &CounterFamily("tokenwarehouse_get_hits_total", "Chunks served, by tier");
  misses_ = &CounterFamily("tokenwarehouse_get_misses_total", "Chunks not served, by reason");
  lookup_chunks_ =
      &CounterFamily("tokenwarehouse_lookup_chunks_total", "Chunks found or missed by lookups");
  puts_ = &CounterFamily("tokenwarehouse_puts_total", "Put results");
  bytes_out_ = &CounterFamily("tokenwarehouse_bytes_out_total",
                              "Bytes copied into client arenas, by serving tier");
  bytes_in_ =
      &CounterFamily("tokenwarehouse_bytes_in_total", "Bytes stored from client arenas").Add({});
  tokens_ = &CounterFamily("tokenwarehouse_tokens_served_total",
                           "Prompt tokens whose KV was served from cache (prefill avoided)");
  latency_ = &metrics::HistogramFamily("tokenwarehouse_request_duration_seconds",
                                       "Request latency in twd, by op");
  clients_ = &GaugeFamily("tokenwarehouse_connected_clients", "Open client connections").Add({});
  protocol_errors_ = &CounterFamily("tokenwarehouse_protocol_errors_total",
                                    "Rejected frames and requests, by kind");
  used_ = &GaugeFamily("tokenwarehouse_tier_used_bytes", "Bytes used per tier");
  free_ = &GaugeFamily("tokenwarehouse_tier_free_bytes", "Bytes free per tier");
  capacity_ = &GaugeFamily("tokenwarehouse_tier_capacity_bytes", "Capacity per tier");
  chunks_ = &GaugeFamily("tokenwarehouse_tier_chunks", "Chunks stored per tier");
  evictions_ = &CounterFamily("tokenwarehouse_evictions_total", "Chunks evicted per tier");
  io_errors_ = &CounterFamily("tokenwarehouse_io_errors_total", "Device I/O errors per tier");
  corrupt_ = &CounterFamily("tokenwarehouse_corrupt_total", "Records failing a checksum");
  dropped_unwritten_ = &CounterFamily("tokenwarehouse_dropped_unwritten_total",
                                      "Memory-durability chunks dropped before write-back")
                            .Add({});
  reclaim_rewrites_ =
      &CounterFamily("tokenwarehouse_nvme_reclaim_rewrites_total",
                     "Chunks NVMe reclaim rewrote to keep them (live data moved out of a region)")
           .Add({});
  promotions_ =
      &CounterFamily("tokenwarehouse_promotions_total", "Chunks copied from NVMe into DRAM by gets")
           .Add({});
}

std::string ServiceMetrics::NamespaceLabel(const Key& digest) { return labeller_.Label(digest); }

void ServiceMetrics::SetMaxNamespaceLabels(uint32_t max) { labeller_.SetMax(max); }

void ServiceMetrics::GetHit(store::Tier tier, const Key& digest, uint64_t bytes, uint32_t tokens) {
  const std::string t(ToString(tier));
  const std::string ns = labeller_.Count(digest, 1);
  hits_->Add({{"tier", t}, {"namespace", ns}}).Increment();
  bytes_out_->Add({{"tier", t}}).Increment(static_cast<double>(bytes));
  tokens_->Add({{"namespace", ns}}).Increment(tokens);
}

void ServiceMetrics::GetMiss(store::MissReason reason, const Key& digest) {
  const std::string ns = labeller_.Count(digest, 1);
  misses_->Add({{"reason", std::string(ToString(reason))}, {"namespace", ns}}).Increment();
}

namespace {

// The series `*slot` caches, made by `make` on first use (racing makers get the same series:
// Family::Add returns the existing one).
template <typename T, typename Make>
T& Cached(std::atomic<T*>& slot, Make make) {
  T* p = slot.load(std::memory_order_acquire);
  if (p == nullptr) {
    p = &make();
    slot.store(p, std::memory_order_release);
  }
  return *p;
}

}  // namespace

void ServiceMetrics::LookupChunks(uint64_t found, uint64_t missing) {
  Cached(lookup_hit_, [&]() -> prometheus::Counter& {
    return lookup_chunks_->Add({{"result", "hit"}});
  }).Increment(static_cast<double>(found));
  Cached(lookup_miss_, [&]() -> prometheus::Counter& {
    return lookup_chunks_->Add({{"result", "miss"}});
  }).Increment(static_cast<double>(missing));
}

void ServiceMetrics::PutResult(::tw::PutResult result, const Key& digest, uint64_t bytes) {
  const std::string ns = labeller_.Count(digest, 1);
  puts_->Add({{"result", std::string(ToString(result))}, {"namespace", ns}}).Increment();
  if (result == ::tw::PutResult::kStored) bytes_in_->Increment(static_cast<double>(bytes));
}

void ServiceMetrics::Latency(protocol::Opcode op, double seconds) {
  auto make = [&]() -> prometheus::Histogram& {
    return latency_->Add({{"op", std::string(protocol::ToString(op))}}, metrics::LatencyBuckets());
  };
  const auto i = static_cast<size_t>(op);
  if (i >= latency_by_op_.size()) {
    make().Observe(seconds);
    return;
  }
  Cached(latency_by_op_[i], make).Observe(seconds);
}

void ServiceMetrics::ProtocolError(std::string_view kind) {
  protocol_errors_->Add({{"kind", std::string(kind)}}).Increment();
}

void ServiceMetrics::ClientsDelta(int delta) { clients_->Increment(delta); }

void ServiceMetrics::UpdateFromStore(const store::StoreStats& s) {
  std::lock_guard lock(mu_);
  auto mirror = [](prometheus::Counter& c, uint64_t now, uint64_t before) {
    if (now > before) c.Increment(static_cast<double>(now - before));
  };
  const std::pair<const char*, std::pair<const store::TierStats*, const store::TierStats*>>
      tiers[] = {{"dram", {&s.dram, &last_.dram}}, {"nvme", {&s.nvme, &last_.nvme}}};
  for (const auto& [name, pair] : tiers) {
    const store::TierStats& now = *pair.first;
    const store::TierStats& before = *pair.second;
    used_->Add({{"tier", name}}).Set(static_cast<double>(now.used_bytes));
    free_->Add({{"tier", name}})
        .Set(static_cast<double>(
            now.capacity_bytes > now.used_bytes ? now.capacity_bytes - now.used_bytes : 0));
    capacity_->Add({{"tier", name}}).Set(static_cast<double>(now.capacity_bytes));
    chunks_->Add({{"tier", name}}).Set(static_cast<double>(now.chunks));
    mirror(evictions_->Add({{"tier", name}}), now.evictions, before.evictions);
    mirror(io_errors_->Add({{"tier", name}}), now.io_errors, before.io_errors);
    mirror(corrupt_->Add({{"tier", name}}), now.corrupt, before.corrupt);
  }
  mirror(*dropped_unwritten_, s.dropped_unwritten, last_.dropped_unwritten);
  mirror(*reclaim_rewrites_, s.rewrites, last_.rewrites);
  mirror(*promotions_, s.promotions, last_.promotions);
  last_ = s;
}

}  // namespace tw::twd
