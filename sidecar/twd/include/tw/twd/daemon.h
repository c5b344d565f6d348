// Daemon: twd as a whole — config, the store, the ServiceCore, the socket Server, the HTTP
// metrics server, reloads and graceful shutdown. The `twd` executable is RunDaemon() with
// hooks that open the real storage engine; tests run it with a fake store.
//
// Threading: Start/Reload/Shutdown from one controlling thread (RunDaemon's signal loop).
// ready() from any thread. Lifetime: Shutdown() once, then destroy.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "tw/common/config.h"
#include "tw/common/metrics.h"
#include "tw/common/status.h"
#include "tw/mesh/rdma/verbs.h"
#include "tw/store/store.h"
#include "tw/twd/options.h"

namespace tw::twd {

class ServiceCore;  // private to twd (src/service_core.h)
class Server;       // private to twd (src/server.h)
class MeshFront;    // private to twd (src/mesh_front.h)

// How the daemon reaches the storage engine (the real one in `twd`, a fake in tests).
struct StoreHooks {
  // Opens the store for a validated config.
  std::function<StatusOr<std::unique_ptr<store::Store>>(const config::Config&)> open;
  // Applies run-time store fields (quotas, admission) of a reloaded config.
  std::function<Status(store::Store&, const config::Config&)> reconfigure;
  // Opens the RDMA device port for mesh.transport rdma or auto (empty: the real device,
  // mesh.rdma_device or the first ACTIVE port). Tests pass a SoftFabric port.
  std::function<StatusOr<std::unique_ptr<mesh::rdma::Verbs>>(const config::Config&)> open_rdma;
};

// The store's options from twd's configuration (its dram, nvme, admission, quota and lease
// sections).
store::Options StoreOptionsFromConfig(const config::Config& c);

// Where twd keeps the namespace fields clients declared (so that they survive a restart):
// "<first NVMe path>.namespaces", next to the store's data. Empty (kept in memory only)
// without an NVMe tier or when that path is a block device.
std::string NamespaceRegistryPath(const config::Config& c);

class Daemon {
 public:
  static StatusOr<std::unique_ptr<Daemon>> Start(const DaemonOptions& options, StoreHooks hooks);
  ~Daemon();

  // Re-reads the config file (flags still win) and applies what can change at run time: log
  // level, quotas, admission, tenants, limits, leases, default durability, namespace label
  // cap. Other changed fields are logged as needing a restart. A bad file keeps the old config.
  Status Reload();
  // True when the config file changed since the last load (mtime, size or inode).
  bool ConfigFileChanged();

  // Stops accepting, finishes in-flight requests, closes the store with what is left of the
  // grace period (writing back memory-durability chunks and a clean summary).
  Status Shutdown();

  bool ready() const { return ready_.load(); }
  // The GPU path in one line (docs/gpu.md): in the log at start, `twctl stat`, /readyz.
  const std::string& gpu_status() const { return gpu_status_; }
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }
  const config::Config& config() const { return config_; }
  ServiceCore* core() { return core_.get(); }
  Server* server() { return server_.get(); }

 private:
  Daemon();

  DaemonOptions options_;
  StoreHooks hooks_;
  config::Config config_;
  struct stat config_stat_ {};
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<ServiceCore> core_;
  std::unique_ptr<MeshFront> mesh_;  // with mesh.enabled
  std::unique_ptr<Server> server_;
  std::unique_ptr<metrics::MetricsServer> metrics_;
  std::atomic<bool> ready_{false};
  std::string gpu_status_;  // set in Start before anything reads it
  bool shut_down_ = false;
};

// The main of `twd`: flags, --version, start, then a signal loop — SIGTERM/SIGINT shut down
// gracefully and return 0; SIGHUP or a changed config file reloads. Returns the exit code.
int RunDaemon(int argc, char** argv, StoreHooks hooks);

}  // namespace tw::twd
