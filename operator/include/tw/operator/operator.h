// Operator: the tw-operator process minus main() — informers for TokenWarehouses and the
// kinds it owns, the event → key mapping, the work queue and its workers, leader election,
// /healthz, /readyz and Prometheus metrics.
//
// Informers run on every replica (a standby keeps warm caches); workers reconcile only while
// this replica leads (or always, without --leader-elect). Losing the lease stops the workers
// after their current pass; winning it again re-queues every TokenWarehouse. Events on
// children map to the owning TokenWarehouse through the controller ownerReference (pods
// through the tokenwarehouse.io/name label). Every TokenWarehouse is also re-queued each
// resync period. With a webhook address, the pod webhook (webhook.h) is served as well.
//
// Threading: Start() and Stop() from one thread; the accessors from any. Lifetime: Stop()
// (or the destructor) joins every thread it started.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tw/common/metrics.h"
#include "tw/operator/informer.h"
#include "tw/operator/kube_client.h"
#include "tw/operator/leader_election.h"
#include "tw/operator/reconciler.h"
#include "tw/operator/webhook.h"
#include "tw/operator/work_queue.h"

namespace tw::op {

struct OperatorOptions {
  KubeConfig kube;
  // Namespace to watch ("" = all namespaces).
  std::string watch_namespace;
  bool leader_elect = false;
  LeaderElectionConfig leader_election;
  // HOST:PORT for /metrics and for /healthz + /readyz ("" = not served; may be equal).
  std::string metrics_address;
  std::string health_address;
  RenderOptions render;
  int workers = 2;
  RateLimiterConfig rate_limiter;
  // Watch timeouts drawn from [min, max].
  std::chrono::seconds min_watch_timeout{300};
  std::chrono::seconds max_watch_timeout{600};
  // Every TokenWarehouse is re-queued this often (jittered).
  std::chrono::nanoseconds resync_period = std::chrono::hours(10);
  // The mutating admission webhook for inference pods (off when its address is empty). It
  // runs on every replica, leader or not, and looks warehouses up in the informer cache.
  WebhookOptions webhook;
};

class Operator {
 public:
  static StatusOr<std::unique_ptr<Operator>> Create(OperatorOptions options);
  ~Operator();

  Status Start();
  void Stop();

  bool IsLeader() const;
  // All informers have listed once.
  bool Synced() const;
  // Bound ports (0 when not served).
  int metrics_port() const;
  int health_port() const;
  const std::string& identity() const;

  uint64_t reconciles() const { return reconciles_.load(); }
  uint64_t reconcile_errors() const { return reconcile_errors_.load(); }
  WorkQueue& queue() { return *queue_; }
  Reconciler& reconciler() { return *reconciler_; }
  Informer& tokenwarehouses() { return *tw_informer_; }
  Informer& pods() { return *pod_informer_; }
  // The webhook, or null when off.
  Webhook* webhook() { return webhook_.get(); }

 private:
  explicit Operator(OperatorOptions options);
  void OnTokenWarehouse(EventType type, const ObjectPtr& obj);
  void OnOwned(EventType type, const ObjectPtr& obj);
  void OnPod(EventType type, const ObjectPtr& obj);
  void Worker();
  void ProcessOne(const std::string& key);
  void StartLeading();
  void StopLeading();
  void Resync();
  void UpdateQueueMetrics();

  OperatorOptions options_;
  std::unique_ptr<KubeClient> client_;
  std::unique_ptr<WorkQueue> queue_;
  std::unique_ptr<Informer> tw_informer_;
  std::unique_ptr<Informer> cm_informer_;
  std::unique_ptr<Informer> ds_informer_;
  std::unique_ptr<Informer> svc_informer_;
  std::unique_ptr<Informer> pod_informer_;
  std::unique_ptr<Reconciler> reconciler_;
  std::unique_ptr<LeaderElector> elector_;
  std::unique_ptr<WarehouseSource> warehouse_source_;
  std::unique_ptr<Webhook> webhook_;
  std::unique_ptr<metrics::MetricsServer> metrics_server_;
  std::unique_ptr<metrics::MetricsServer> health_server_;
  std::vector<std::thread> workers_;
  std::thread resync_thread_;
  std::mutex resync_mu_;
  std::condition_variable resync_cv_;
  std::atomic<bool> leading_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> started_{false};
  std::atomic<uint64_t> reconciles_{0};
  std::atomic<uint64_t> reconcile_errors_{0};
  std::atomic<uint64_t> reported_adds_{0};
  std::atomic<uint64_t> reported_retries_{0};
};

}  // namespace tw::op
