// The metrics facade: one prometheus-cpp registry per process, and helpers that create
// metric families named `tokenwarehouse_*` (or, for the operator, any given prefix).
//
// Families are created once at start-up and kept; the returned references live as long as
// the process (the registry is never destroyed). Incrementing a counter or observing a
// histogram is lock-free and may happen on any thread. Creating families takes the
// registry's lock.
//
// Exposing over HTTP: MetricsServer serves /metrics from the registry plus any extra
// handlers (/healthz, /readyz), on civetweb's own threads (embedded directly; prometheus-cpp's
// Exposer is not used). Destroying a MetricsServer stops civetweb (mg_stop), which joins those
// threads; it shuts civetweb's listening sockets down first, so that the stop takes
// milliseconds rather than civetweb's 2 s accept-poll round.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "tw/common/status.h"

namespace tw::metrics {

// The process-wide registry.
std::shared_ptr<prometheus::Registry> Registry();

// `name` must already carry its prefix and unit suffix (`tokenwarehouse_hits_total`).
prometheus::Family<prometheus::Counter>& CounterFamily(const std::string& name,
                                                       const std::string& help);
prometheus::Family<prometheus::Gauge>& GaugeFamily(const std::string& name,
                                                   const std::string& help);
prometheus::Family<prometheus::Histogram>& HistogramFamily(const std::string& name,
                                                           const std::string& help);

// Latency buckets in seconds from 10 µs to 10 s, roughly ×2.5 apart.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets();

// Renders the registry in the Prometheus text format (for tests and the admin socket).
std::string RenderText();

// An HTTP server for /metrics and plain handlers such as /healthz. A handler returns the
// HTTP status and body.
class MetricsServer {
 public:
  using Handler = std::function<std::pair<int, std::string>()>;
  // Binds `address` ("0.0.0.0:9400", "127.0.0.1:0" picks a free port).
  static StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& address,
                                                        std::map<std::string, Handler> handlers);
  ~MetricsServer();
  // The bound port (useful with ":0").
  int port() const;

 private:
  struct Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tw::metrics
