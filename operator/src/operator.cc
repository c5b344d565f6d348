#include "tw/operator/operator.h"

#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/operator/backoff.h"

namespace tw::op {
namespace {

// Families and series shared by every Operator of the process (created once).
struct OperatorMetrics {
  prometheus::Counter& reconciles;
  prometheus::Counter& errors;
  prometheus::Histogram& duration;
  prometheus::Gauge& depth;
  prometheus::Counter& adds;
  prometheus::Counter& retries;
  prometheus::Gauge& leader;

  static OperatorMetrics& Get() {
    static OperatorMetrics* m = [] {
      const std::map<std::string, std::string> labels = {{"controller", "tokenwarehouse"}};
      auto& reconciles = metrics::CounterFamily("tokenwarehouse_operator_reconcile_total",
                                                "Reconcile passes, by controller.")
                             .Add(labels);
      auto& errors = metrics::CounterFamily("tokenwarehouse_operator_reconcile_errors_total",
                                            "Reconcile passes that returned an error.")
                         .Add(labels);
      auto& duration =
          metrics::HistogramFamily("tokenwarehouse_operator_reconcile_duration_seconds",
                                   "Time of one reconcile pass.")
              .Add(labels, metrics::LatencyBuckets());
      auto& depth = metrics::GaugeFamily("tokenwarehouse_operator_workqueue_depth",
                                         "Keys waiting in the work queue.")
                        .Add(labels);
      auto& adds = metrics::CounterFamily("tokenwarehouse_operator_workqueue_adds_total",
                                          "Keys added to the work queue.")
                       .Add(labels);
      auto& retries = metrics::CounterFamily("tokenwarehouse_operator_workqueue_retries_total",
                                             "Rate-limited re-queues after errors.")
                          .Add(labels);
      auto& leader = metrics::GaugeFamily("tokenwarehouse_operator_leader_status",
                                          "1 while this replica holds the leader lease.")
                         .Add({{"lease", "tw-operator"}});
      return new OperatorMetrics{reconciles, errors, duration, depth, adds, retries, leader};
    }();
    return *m;
  }
};

std::string OwnerKey(const Json& obj) {
  const Json& meta = obj.value("metadata", Json::object());
  for (const auto& ref : meta.value("ownerReferences", Json::array())) {
    if (ref.value("controller", false) && ref.value("kind", "") == "TokenWarehouse" &&
        ref.value("apiVersion", "").starts_with("tokenwarehouse.io/")) {
      return StrCat(meta.value("namespace", ""), "/", ref.value("name", ""));
    }
  }
  return "";
}

// The webhook's view of TokenWarehouses: the informer cache.
class InformerWarehouses : public WarehouseSource {
 public:
  explicit InformerWarehouses(const Informer* informer) : informer_(informer) {}
  std::shared_ptr<const Json> Get(std::string_view ns, std::string_view name) const override {
    return informer_->Get(ns, name);
  }
  std::vector<std::shared_ptr<const Json>> List() const override { return informer_->List(); }
  bool Synced() const override { return informer_->HasSynced(); }

 private:
  const Informer* informer_;
};

}  // namespace

Operator::Operator(OperatorOptions options) : options_(std::move(options)) {}

Operator::~Operator() { Stop(); }

StatusOr<std::unique_ptr<Operator>> Operator::Create(OperatorOptions options) {
  if (options.workers < 1) return InvalidArgumentError("workers: must be at least 1");
  if (options.leader_elect) {
    const auto& le = options.leader_election;
    if (!(le.lease_duration > le.renew_deadline && le.renew_deadline > le.retry_period)) {
      return InvalidArgumentError(
          "leader election: need lease-duration > renew-deadline > retry-period");
    }
  }
  std::unique_ptr<Operator> op(new Operator(std::move(options)));
  TW_ASSIGN_OR_RETURN(op->client_, KubeClient::Create(op->options_.kube));
  op->queue_ = std::make_unique<WorkQueue>(op->options_.rate_limiter);
  auto make = [&](const ResourceType& type, const std::string& selector,
                  Informer::Handler handler) {
    InformerConfig cfg;
    cfg.type = type;
    cfg.ns = op->options_.watch_namespace;
    cfg.label_selector = selector;
    cfg.min_watch_timeout = op->options_.min_watch_timeout;
    cfg.max_watch_timeout = op->options_.max_watch_timeout;
    return std::make_unique<Informer>(op->client_.get(), cfg, std::move(handler));
  };
  Operator* self = op.get();
  const std::string owned = StrCat(kLabelManagedBy, "=", kManagedByValue);
  op->tw_informer_ = make(kinds::kTokenWarehouse, "", [self](EventType t, const ObjectPtr& o) {
    self->OnTokenWarehouse(t, o);
  });
  op->cm_informer_ = make(kinds::kConfigMap, owned,
                          [self](EventType t, const ObjectPtr& o) { self->OnOwned(t, o); });
  op->ds_informer_ = make(kinds::kDaemonSet, owned,
                          [self](EventType t, const ObjectPtr& o) { self->OnOwned(t, o); });
  op->svc_informer_ = make(kinds::kService, owned,
                           [self](EventType t, const ObjectPtr& o) { self->OnOwned(t, o); });
  op->pod_informer_ = make(kinds::kPod, StrCat(kLabelName, "=twd,", owned),
                           [self](EventType t, const ObjectPtr& o) { self->OnPod(t, o); });
  Caches caches{op->tw_informer_.get(), op->cm_informer_.get(), op->ds_informer_.get(),
                op->svc_informer_.get(), op->pod_informer_.get()};
  op->reconciler_ = std::make_unique<Reconciler>(op->client_.get(), caches, op->options_.render);
  if (op->options_.webhook.enabled()) {
    TW_RETURN_IF_ERROR(op->options_.webhook.Validate());
    op->warehouse_source_ = std::make_unique<InformerWarehouses>(op->tw_informer_.get());
    op->webhook_ = std::make_unique<Webhook>(op->client_.get(), op->warehouse_source_.get(),
                                             op->options_.webhook);
  }
  if (op->options_.leader_elect) {
    op->elector_ = std::make_unique<LeaderElector>(
        op->client_.get(), op->options_.leader_election, [self] { self->StartLeading(); },
        [self] { self->StopLeading(); });
  }
  return op;
}

Status Operator::Start() {
  if (started_.exchange(true)) return FailedPreconditionError("operator already started");
  auto health = [this](bool ready) -> metrics::MetricsServer::Handler {
    return [this, ready]() -> std::pair<int, std::string> {
      if (stopping_) return {503, "stopping\n"};
      if (ready && !Synced()) return {503, "caches not synced\n"};
      if (ready && webhook_ != nullptr && !webhook_->Serving()) {
        return {503, "webhook has no certificate yet\n"};
      }
      return {200, "ok\n"};
    };
  };
  std::map<std::string, metrics::MetricsServer::Handler> probes = {{"/healthz", health(false)},
                                                                   {"/readyz", health(true)}};
  if (!options_.metrics_address.empty()) {
    std::map<std::string, metrics::MetricsServer::Handler> extra;
    if (options_.health_address == options_.metrics_address) extra = probes;
    TW_ASSIGN_OR_RETURN(metrics_server_,
                        metrics::MetricsServer::Start(options_.metrics_address, extra));
  }
  if (!options_.health_address.empty() && options_.health_address != options_.metrics_address) {
    TW_ASSIGN_OR_RETURN(health_server_,
                        metrics::MetricsServer::Start(options_.health_address, probes));
  }
  OperatorMetrics::Get();
  for (Informer* inf : {tw_informer_.get(), cm_informer_.get(), ds_informer_.get(),
                        svc_informer_.get(), pod_informer_.get()}) {
    inf->Start();
  }
  if (webhook_ != nullptr) webhook_->Start();
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { Worker(); });
  resync_thread_ = std::thread([this] { Resync(); });
  if (elector_ != nullptr) {
    elector_->Start();
  } else {
    StartLeading();
  }
  TW_LOG(kInfo, "tw-operator started",
         {{"namespace", options_.watch_namespace.empty() ? "(all)" : options_.watch_namespace},
          {"leader_elect", options_.leader_elect},
          {"identity", identity()}});
  return OkStatus();
}

void Operator::Stop() {
  if (!started_ || stopping_.exchange(true)) return;
  if (elector_ != nullptr) elector_->Stop();  // releases the lease while the client works
  leading_ = false;
  queue_->ShutDown();
  {
    std::lock_guard<std::mutex> lock(resync_mu_);
    resync_cv_.notify_all();
  }
  for (auto& w : workers_) w.join();
  workers_.clear();
  if (resync_thread_.joinable()) resync_thread_.join();
  if (webhook_ != nullptr) webhook_->Stop();
  client_->Shutdown();
  for (Informer* inf : {tw_informer_.get(), cm_informer_.get(), ds_informer_.get(),
                        svc_informer_.get(), pod_informer_.get()}) {
    inf->Stop();
  }
  metrics_server_.reset();
  health_server_.reset();
  OperatorMetrics::Get().leader.Set(0);
}

bool Operator::IsLeader() const { return leading_.load(); }

bool Operator::Synced() const {
  return tw_informer_->HasSynced() && cm_informer_->HasSynced() && ds_informer_->HasSynced() &&
         svc_informer_->HasSynced() && pod_informer_->HasSynced();
}

int Operator::metrics_port() const { return metrics_server_ ? metrics_server_->port() : 0; }

int Operator::health_port() const {
  if (health_server_) return health_server_->port();
  return options_.health_address == options_.metrics_address ? metrics_port() : 0;
}

const std::string& Operator::identity() const {
  static const std::string kNone = "(no leader election)";
  return elector_ ? elector_->identity() : kNone;
}

void Operator::StartLeading() {
  leading_ = true;
  OperatorMetrics::Get().leader.Set(1);
  for (const auto& tw : tw_informer_->List()) queue_->Add(Informer::KeyOf(*tw));
}

void Operator::StopLeading() {
  leading_ = false;
  OperatorMetrics::Get().leader.Set(0);
}

void Operator::OnTokenWarehouse(EventType type, const ObjectPtr& obj) {
  queue_->Add(Informer::KeyOf(*obj));
  // A TokenWarehouse that changes or goes may free an NVMe path another one was refused for.
  if (type != EventType::kAdded) {
    std::string self = Informer::KeyOf(*obj);
    for (const auto& key : reconciler_->ConflictedKeys()) {
      if (key != self) queue_->Add(key);
    }
  }
  UpdateQueueMetrics();
}

void Operator::OnOwned(EventType, const ObjectPtr& obj) {
  std::string key = OwnerKey(*obj);
  if (!key.empty()) queue_->Add(key);
  UpdateQueueMetrics();
}

void Operator::OnPod(EventType, const ObjectPtr& obj) {
  const Json& meta = obj->value("metadata", Json::object());
  std::string owner = meta.value("labels", Json::object()).value(kLabelOwner, "");
  if (!owner.empty()) queue_->Add(StrCat(meta.value("namespace", ""), "/", owner));
  UpdateQueueMetrics();
}

void Operator::UpdateQueueMetrics() {
  auto& m = OperatorMetrics::Get();
  m.depth.Set(static_cast<double>(queue_->Len()));
  uint64_t adds = queue_->adds();
  uint64_t retries = queue_->retries();
  uint64_t prev_adds = reported_adds_.exchange(adds);
  uint64_t prev_retries = reported_retries_.exchange(retries);
  if (adds > prev_adds) m.adds.Increment(static_cast<double>(adds - prev_adds));
  if (retries > prev_retries) m.retries.Increment(static_cast<double>(retries - prev_retries));
}

void Operator::Worker() {
  while (!stopping_) {
    if (!leading_) {
      std::unique_lock<std::mutex> lock(resync_mu_);
      resync_cv_.wait_for(lock, std::chrono::milliseconds(100));
      continue;
    }
    auto key = queue_->GetFor(std::chrono::milliseconds(200));
    if (!key) continue;
    ProcessOne(*key);
    queue_->Done(*key);
    UpdateQueueMetrics();
  }
}

void Operator::ProcessOne(const std::string& key) {
  auto& m = OperatorMetrics::Get();
  auto start = std::chrono::steady_clock::now();
  auto result = reconciler_->Reconcile(key);
  m.duration.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  m.reconciles.Increment();
  ++reconciles_;
  if (!result.ok()) {
    ++reconcile_errors_;
    m.errors.Increment();
    if (result.status().code() == StatusCode::kCancelled) return;
    TW_LOG(kWarn, "reconcile failed", {{"tokenwarehouse", key}, {"error", result.status()}});
    queue_->AddRateLimited(key);
    return;
  }
  queue_->Forget(key);
  if (result->requeue_after) queue_->AddAfter(key, *result->requeue_after);
}

void Operator::Resync() {
  while (!stopping_) {
    {
      std::unique_lock<std::mutex> lock(resync_mu_);
      resync_cv_.wait_for(lock, Jittered(options_.resync_period, 0.1),
                          [this] { return stopping_.load(); });
    }
    if (stopping_) break;
    for (const auto& tw : tw_informer_->List()) {
      std::string key = Informer::KeyOf(*tw);
      reconciler_->ForceApplyNextPass(key);
      queue_->Add(key);
    }
  }
}

}  // namespace tw::op
