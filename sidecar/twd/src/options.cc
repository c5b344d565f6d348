#include "tw/twd/options.h"

#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/common/units.h"

namespace tw::twd {
namespace {

constexpr uint64_t kDefaultPathCapacity = uint64_t{4} << 30;  // per --data-dir, without a size

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// The directory `path` will be created in exists and is writable. A missing directory is
// created (0755) when the path is a built-in default; otherwise the error names `origin`, the
// flag or config field the path came from.
Status CheckSocketDirectory(const std::string& path, bool is_default, const std::string& origin) {
  const std::string dir = DirOf(path);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT && is_default) {
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      if (!ec && ::chmod(dir.c_str(), 0755) == 0) return OkStatus();
      return FailedPreconditionError(
          StrCat("the default socket directory ", dir, " does not exist and cannot be created (",
                 ec ? ec.message() : std::strerror(errno), "): pass ", origin,
                 " PATH in a directory you can write (the admin socket goes next to it)"));
    }
    return FailedPreconditionError(StrCat(origin, " ", path, ": directory ", dir, ": ",
                                          std::strerror(err),
                                          " (create it, or pass a path in an existing one)"));
  }
  if (!S_ISDIR(st.st_mode)) {
    return FailedPreconditionError(StrCat(origin, " ", path, ": ", dir, " is not a directory"));
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return FailedPreconditionError(StrCat(origin, " ", path, ": cannot create a socket in ", dir,
                                          " (", std::strerror(errno), "): pass ", origin,
                                          " PATH in a directory you can write"));
  }
  return OkStatus();
}

}  // namespace

StatusOr<DaemonOptions> ParseFlags(int argc, char** argv) {
  DaemonOptions o;
  const config::Config defaults;
  CLI::App app{"twd: the Token Warehouse per-node KV-cache service"};
  std::string socket, admin_socket, dram, nvme, metrics_address, log_level;
  auto dflt = [](std::string_view what, std::string_view value) {
    return StrCat(what, " (default: ", value, ")");
  };
  app.add_option("--config", o.config_path,
                 dflt("YAML config file, docs/config.md", "none, the defaults shown here"));
  auto* s = app.add_option("--socket", socket, dflt("client socket path", defaults.socket.path));
  auto* a = app.add_option(
      "--admin-socket", admin_socket,
      dflt("admin socket path, mode 0600", StrCat(kAdminSocketName, " next to --socket")));
  app.add_option("--data-dir", o.data_dirs,
                 dflt("NVMe data directory (the store is DIR/twd.data), file or block device; "
                      "repeatable",
                      "none, a DRAM tier only"));
  auto* d = app.add_option("--dram-capacity", dram,
                           dflt("DRAM tier size", FormatByteSize(defaults.dram.capacity)));
  auto* n = app.add_option("--nvme-capacity", nvme,
                           dflt("NVMe tier size over all data dirs",
                                StrCat(FormatByteSize(kDefaultPathCapacity), " per --data-dir")));
  auto* m = app.add_option(
      "--metrics-address", metrics_address,
      dflt("HOST:PORT of /metrics /healthz /readyz, \"\" disables", defaults.metrics.address));
  auto* l = app.add_option("--log-level", log_level,
                           dflt("debug, info, warn or error", defaults.log_level));
  uint32_t workers = defaults.workers;
  auto* w = app.add_option("--workers", workers,
                           dflt("request worker threads, 0 = hardware threads clamped to 4..32",
                                StrCat(defaults.workers)));
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
  const config::Config defaults;
  if (o.socket) c.socket.path = *o.socket;
  if (o.admin_socket) {
    c.admin_socket.path = *o.admin_socket;
  } else if (c.admin_socket.path == defaults.admin_socket.path &&
             c.socket.path != defaults.socket.path) {
    // A client socket moved by flag or file takes the default admin socket along.
    c.admin_socket.path = AdminSocketNextTo(c.socket.path);
  }
  if (o.metrics_address) c.metrics.address = *o.metrics_address;
  if (o.log_level) c.log_level = *o.log_level;
  if (o.workers) c.workers = *o.workers;
  if (o.dram_capacity) c.dram.capacity = *o.dram_capacity;
  if (!o.data_dirs.empty()) {
    c.nvme.paths.clear();
    const uint64_t per_path =
        o.nvme_capacity ? *o.nvme_capacity / o.data_dirs.size() : kDefaultPathCapacity;
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

std::string AdminSocketNextTo(const std::string& socket_path) {
  const size_t slash = socket_path.rfind('/');
  if (slash == std::string::npos) return kAdminSocketName;
  return StrCat(socket_path.substr(0, slash + 1), kAdminSocketName);
}

Status PrepareSocketDirectories(const config::Config& c, const DaemonOptions& o) {
  const config::Config defaults;
  const std::string file = o.config_path.empty() ? "" : StrCat(" in ", o.config_path);
  // A path at its default is changed with the flag; one the file set, in the file.
  const bool socket_from_file = !o.socket && c.socket.path != defaults.socket.path;
  const std::string socket_origin =
      socket_from_file ? StrCat("socket.path", file) : std::string("--socket");
  TW_RETURN_IF_ERROR(
      CheckSocketDirectory(c.socket.path, c.socket.path == defaults.socket.path, socket_origin));
  const bool admin_from_file = !o.admin_socket && c.admin_socket.path != defaults.admin_socket.path;
  std::string admin_origin =
      admin_from_file ? StrCat("admin_socket.path", file) : std::string("--admin-socket");
  if (!o.admin_socket && c.admin_socket.path == AdminSocketNextTo(c.socket.path)) {
    admin_origin = socket_origin;  // it follows the client socket
  }
  return CheckSocketDirectory(c.admin_socket.path,
                              c.admin_socket.path == defaults.admin_socket.path, admin_origin);
}

}  // namespace tw::twd
