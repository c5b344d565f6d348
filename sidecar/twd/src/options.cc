#include "tw/twd/options.h"

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/common/units.h"

namespace tw::twd {

StatusOr<DaemonOptions> ParseFlags(int argc, char** argv) {
  DaemonOptions o;
  CLI::App app{"twd: the Token Warehouse per-node KV-cache service"};
  std::string socket, admin_socket, dram, nvme, metrics_address, log_level;
  app.add_option("--config", o.config_path, "YAML config file (docs/config.md)");
  auto* s = app.add_option("--socket", socket, "client socket path");
  auto* a = app.add_option("--admin-socket", admin_socket, "admin socket path (mode 0600)");
  app.add_option("--data-dir", o.data_dirs, "NVMe data directory, file or device (repeatable)");
  auto* d = app.add_option("--dram-capacity", dram, "DRAM tier size, e.g. 8GiB");
  auto* n = app.add_option("--nvme-capacity", nvme, "NVMe tier size over all data dirs");
  auto* m = app.add_option("--metrics-address", metrics_address,
                           "HOST:PORT for /metrics /healthz /readyz (\"\" disables)");
  auto* l = app.add_option("--log-level", log_level, "debug, info, warn or error");
  uint32_t workers = 0;
  auto* w = app.add_option("--workers", workers,
                           "request worker threads (0 = hardware threads, clamped to 4..32)");
  app.add_flag("--version", o.version, "print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    o.help = true;
    return o;
  } catch (const CLI::ParseError& e) {
    return InvalidArgumentError(e.what());
  }
  if (*s) o.socket = socket;
  if (*a) o.admin_socket = admin_socket;
  if (*m) o.metrics_address = metrics_address;
  if (*l) o.log_level = log_level;
  if (*w) o.workers = workers;
  if (*d) {
    TW_ASSIGN_OR_RETURN(o.dram_capacity, ParseByteSize(dram, "--dram-capacity"));
  }
  if (*n) {
    TW_ASSIGN_OR_RETURN(o.nvme_capacity, ParseByteSize(nvme, "--nvme-capacity"));
  }
  return o;
}

StatusOr<config::Config> BuildConfig(const DaemonOptions& o) {
  config::Config c;
  if (!o.config_path.empty()) {
    TW_ASSIGN_OR_RETURN(c, config::LoadFile(o.config_path));
  }
  if (o.socket) c.socket.path = *o.socket;
  if (o.admin_socket) c.admin_socket.path = *o.admin_socket;
  if (o.metrics_address) c.metrics.address = *o.metrics_address;
  if (o.log_level) c.log_level = *o.log_level;
  if (o.workers) c.workers = *o.workers;
  if (o.dram_capacity) c.dram.capacity = *o.dram_capacity;
  if (!o.data_dirs.empty()) {
    c.nvme.paths.clear();
    const uint64_t per_path =
        o.nvme_capacity ? *o.nvme_capacity / o.data_dirs.size() : uint64_t{4} << 30;
    for (const std::string& dir : o.data_dirs) {
      struct stat st;
      config::NvmePathConfig p;
      p.path = (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) ? dir + "/twd.data" : dir;
      p.capacity = per_path;
      c.nvme.paths.push_back(p);
    }
  } else if (o.nvme_capacity && !c.nvme.paths.empty()) {
    for (auto& p : c.nvme.paths) p.capacity = *o.nvme_capacity / c.nvme.paths.size();
  }
  TW_RETURN_IF_ERROR(config::Validate(c));
  TW_RETURN_IF_ERROR(log::ParseLevel(c.log_level).status());
  return c;
}

}  // namespace tw::twd
