#include "tw/twd/daemon.h"

#include <google/protobuf/stubs/logging.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <ctime>

#include "mesh_front.h"
#include "server.h"
#include "service_core.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/gpu/cuda_loader.h"

namespace tw::twd {
namespace {

// Fields Reload() can apply; everything else needs a restart.
config::Config WithRuntimeFields(config::Config running, const config::Config& fresh) {
  running.log_level = fresh.log_level;
  running.quotas = fresh.quotas;
  running.default_namespace_quota = fresh.default_namespace_quota;
  running.admission = fresh.admission;
  running.tenants = fresh.tenants;
  running.limits = fresh.limits;
  running.leases = fresh.leases;
  running.default_durability = fresh.default_durability;
  running.metrics.max_namespace_labels = fresh.metrics.max_namespace_labels;
  running.shutdown_grace = fresh.shutdown_grace;
  return running;
}

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_ino == b.st_ino && a.st_dev == b.st_dev && a.st_size == b.st_size &&
         a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

}  // namespace

store::Options StoreOptionsFromConfig(const config::Config& c) {
  store::Options o;
  o.dram.capacity = c.dram.capacity;
  o.dram.hugepages = c.dram.hugepages;
  o.dram.pinned = c.dram.pinned;
  o.dram.eviction = c.dram.eviction;
  o.dram.high_watermark = c.dram.high_watermark;
  o.dram.low_watermark = c.dram.low_watermark;
  for (const config::NvmePathConfig& p : c.nvme.paths) o.nvme.paths.push_back({p.path, p.capacity});
  o.nvme.region_size = c.nvme.region_size;
  o.nvme.stripe_unit = c.nvme.stripe_unit;
  o.nvme.queue_depth = c.nvme.queue_depth;
  o.nvme.reclaim = c.nvme.reclaim;
  o.nvme.high_watermark = c.nvme.high_watermark;
  o.nvme.low_watermark = c.nvme.low_watermark;
  o.nvme.force_format = c.nvme.force_format;
  o.admission.policy = c.admission.policy;
  o.admission.write_budget = c.admission.write_budget;
  for (const config::QuotaConfig& q : c.quotas) o.quotas.push_back({q.namespace_digest, q.bytes});
  o.default_namespace_quota = c.default_namespace_quota;
  o.lease_duration = c.leases.duration;
  o.report_evictions = c.mesh.enabled;  // the mesh withdraws evicted chunks from their homes
  return o;
}

// The GPU path's status line. With gpu.enabled the CUDA runtime and cuFile are dlopen'ed (never
// initialised for I/O here: twd does not open cuFile, so forking stays safe) to say why the path
// is off, or what it found.
std::string GpuStatusLine(const config::Config& c) {
  if (!c.gpu.enabled) return "gpu disabled (gpu.enabled is false)";
  static const gpu::CudaLibraries libs = gpu::CudaLibraries::Load();
  return libs.availability().Describe();
}

std::string NamespaceRegistryPath(const config::Config& c) {
  if (c.nvme.paths.empty()) return "";  // DRAM only: no chunk outlives twd either
  const std::string& first = c.nvme.paths.front().path;
  struct stat st {};
  if (::stat(first.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) {
    TW_LOG(kWarn,
           "the first NVMe path is a block device: namespace fields are not kept across "
           "restarts (pass --namespace to twctl get/delete after a restart)",
           {{"path", first}});
    return "";
  }
  return first + ".namespaces";
}

StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const DaemonOptions& options, StoreHooks hooks) {
  std::unique_ptr<Daemon> d(new Daemon());
  d->options_ = options;
  d->hooks_ = std::move(hooks);
  if (!options.config_path.empty()) ::stat(options.config_path.c_str(), &d->config_stat_);
  // Until the first thing is started there is nothing to shut down (and nothing to log).
  d->shut_down_ = true;
  TW_ASSIGN_OR_RETURN(d->config_, BuildConfig(options));
  // Before the store is opened (and a new data path formatted): a socket that cannot be
  // created must not cost a format.
  TW_RETURN_IF_ERROR(PrepareSocketDirectories(d->config_, options));
  d->shut_down_ = false;
  TW_ASSIGN_OR_RETURN(auto level, log::ParseLevel(d->config_.log_level));
  log::SetLevel(level);
  d->gpu_status_ = GpuStatusLine(d->config_);
  if (d->config_.gpu.enabled && d->gpu_status_.starts_with("gpu on")) {
    TW_LOG(kInfo, "gpu.enabled: the GPU path", {{"status", d->gpu_status_}});
  } else if (d->config_.gpu.enabled) {
    TW_LOG(kWarn, "gpu.enabled, but the GPU path is off", {{"status", d->gpu_status_}});
  }
  if (!d->config_.metrics.address.empty()) {
    Daemon* raw = d.get();
    std::map<std::string, metrics::MetricsServer::Handler> handlers;
    handlers["/healthz"] = [] { return std::pair<int, std::string>(200, "ok\n"); };
    handlers["/readyz"] = [raw] {  // the status, then details (the GPU path)
      const std::string details = raw->gpu_status() + "\n";
      return raw->ready() ? std::pair<int, std::string>(200, "ready\n" + details)
                          : std::pair<int, std::string>(503, "not ready\n" + details);
    };
    TW_ASSIGN_OR_RETURN(d->metrics_,
                        metrics::MetricsServer::Start(d->config_.metrics.address, handlers));
  }
  auto store = d->hooks_.open(d->config_);
  if (!store.ok()) return store.status().WithPrefix("opening the store");
  d->store_ = std::move(*store);
  // After the store: its lock on the data path keeps a second twd off the registry too.
  const std::string registry_path = NamespaceRegistryPath(d->config_);
  auto registry = NamespaceRegistry::Open(registry_path, ServiceCore::kMaxKnownNamespaces);
  if (!registry.ok()) {
    // A convenience, not the cache: twd serves without it (fields known from the first
    // declaration on), and never overwrites a file it cannot read as a registry.
    TW_LOG(kWarn, "namespace registry unusable; namespace fields kept in memory only",
           {{"file", registry_path}, {"error", registry.status()}});
    registry = NamespaceRegistry::Open("", ServiceCore::kMaxKnownNamespaces);
  } else if (!registry_path.empty()) {
    TW_LOG(kInfo, "namespace registry loaded",
           {{"file", registry_path}, {"namespaces", (*registry)->load_stats().loaded}});
  }
  d->core_ = std::make_unique<ServiceCore>(d->config_, d->store_.get(), std::move(*registry));
  d->core_->SetGpuStatus(d->gpu_status_);
  if (d->config_.mesh.enabled) {
    auto mesh = MeshFront::Start(d->config_, d->store_.get(), ServerVersion(), d->hooks_.open_rdma);
    if (!mesh.ok()) {
      d->store_->Close(std::chrono::seconds(0)).IgnoreError();
      d->store_.reset();
      return mesh.status();
    }
    d->mesh_ = std::move(*mesh);
    d->core_->SetRemote(d->mesh_.get());
  }
  ServerOptions so;
  so.socket_path = d->config_.socket.path;
  so.socket_mode = d->config_.socket.mode;
  so.socket_group = d->config_.socket.group;
  so.admin_socket_path = d->config_.admin_socket.path;
  so.workers = d->config_.workers;
  auto server = Server::Start(so, d->core_.get());
  if (!server.ok()) {
    // Leave the store consistent: nothing was served.
    d->core_->SetRemote(nullptr);
    d->mesh_.reset();
    d->store_->Close(std::chrono::seconds(0)).IgnoreError();
    d->store_.reset();
    return server.status();
  }
  d->server_ = std::move(*server);
  d->ready_.store(true);
  TW_LOG(kInfo, "twd ready",
         {{"version", ServerVersion()},
          {"socket", d->config_.socket.path},
          {"metrics_port", d->metrics_port()}});
  return d;
}

Daemon::Daemon() = default;

Daemon::~Daemon() {
  if (!shut_down_) Shutdown().IgnoreError();
}

bool Daemon::ConfigFileChanged() {
  if (options_.config_path.empty()) return false;
  struct stat st {};
  if (::stat(options_.config_path.c_str(), &st) != 0) return false;
  return !SameFile(st, config_stat_);
}

Status Daemon::Reload() {
  if (!options_.config_path.empty()) ::stat(options_.config_path.c_str(), &config_stat_);
  auto fresh = BuildConfig(options_);
  if (!fresh.ok()) {
    TW_LOG(kError, "reload failed, keeping the running config", {{"status", fresh.status()}});
    return fresh.status();
  }
  config::Config next = WithRuntimeFields(config_, *fresh);
  if (!(next == *fresh)) {
    TW_LOG(kWarn, "config changes outside the run-time fields need a restart",
           {{"file", options_.config_path}});
  }
  auto level = log::ParseLevel(next.log_level);
  if (level.ok()) log::SetLevel(*level);
  if (hooks_.reconfigure) {
    Status s = hooks_.reconfigure(*store_, next);
    if (!s.ok()) {
      TW_LOG(kError, "store reconfigure failed", {{"status", s}});
      return s;
    }
  }
  core_->Reconfigure(next);
  config_ = next;
  TW_LOG(kInfo, "config reloaded",
         {{"log_level", next.log_level},
          {"tenants", next.tenants.size()},
          {"quotas", next.quotas.size()}});
  return OkStatus();
}

Status Daemon::Shutdown() {
  if (shut_down_) return OkStatus();
  shut_down_ = true;
  ready_.store(false);
  const auto start = std::chrono::steady_clock::now();
  const auto grace = config_.shutdown_grace;
  TW_LOG(kInfo, "shutting down",
         {{"grace_ms", std::chrono::duration_cast<std::chrono::milliseconds>(grace).count()}});
  if (server_) server_->Stop(grace);
  server_.reset();
  // No client request runs any more: detach the mesh, then stop it (its peer server reads
  // the store, which closes next).
  if (mesh_) {
    core_->SetRemote(nullptr);
    mesh_->Stop();
    mesh_.reset();
  }
  Status s;
  if (store_) {
    const auto spent = std::chrono::steady_clock::now() - start;
    const auto left = spent < grace ? grace - spent : std::chrono::nanoseconds(0);
    s = store_->Close(std::chrono::duration_cast<std::chrono::nanoseconds>(left));
    core_.reset();
    store_.reset();
  }
  metrics_.reset();
  TW_LOG(kInfo, "stopped", {{"status", s}});
  return s;
}

int RunDaemon(int argc, char** argv, StoreHooks hooks) {
  auto options = ParseFlags(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "twd: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  if (options->help) return 0;
  if (options->version) {
    std::printf("%s\n", std::string(ServerVersion()).c_str());
    return 0;
  }
  // A hostile body with invalid UTF-8 is refused and logged by twd once; protobuf's own log
  // line per such frame would let a client flood stderr.
  google::protobuf::SetLogHandler(nullptr);
  // Signals are taken synchronously by this thread; every thread started later inherits
  // the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  auto daemon = Daemon::Start(*options, std::move(hooks));
  if (!daemon.ok()) {
    TW_LOG(kError, "twd failed to start", {{"status", daemon.status()}});
    std::fprintf(stderr, "twd: %s\n", daemon.status().ToString().c_str());
    return 1;
  }
  for (;;) {
    struct timespec timeout = {1, 0};
    int sig = sigtimedwait(&set, nullptr, &timeout);
    if (sig == SIGTERM || sig == SIGINT) {
      TW_LOG(kInfo, "signal received", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
      Status s = (*daemon)->Shutdown();
      return s.ok() ? 0 : 1;
    }
    if (sig == SIGHUP || (sig < 0 && (*daemon)->ConfigFileChanged())) {
      (*daemon)->Reload().IgnoreError();
    }
  }
}

}  // namespace tw::twd
