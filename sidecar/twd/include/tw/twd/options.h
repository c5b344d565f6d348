// Command-line options of twd and how they combine with the config file: the file (or the
// defaults when there is none) is read first, then each flag given overrides its field.
//
// Threading: pure functions. Lifetime: plain values.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tw/common/config.h"
#include "tw/common/status.h"

namespace tw::twd {

struct DaemonOptions {
  std::string config_path;                     // --config ("" = defaults)
  std::optional<std::string> socket;           // --socket
  std::optional<std::string> admin_socket;     // --admin-socket
  std::vector<std::string> data_dirs;          // --data-dir, repeatable
  std::optional<uint64_t> dram_capacity;       // --dram-capacity
  std::optional<uint64_t> nvme_capacity;       // --nvme-capacity (total over the data dirs)
  std::optional<std::string> metrics_address;  // --metrics-address
  std::optional<std::string> log_level;        // --log-level
  std::optional<uint32_t> workers;             // --workers
  bool version = false;                        // --version
  bool help = false;                           // --help was printed
};

// The admin socket's file name when it follows the client socket.
inline constexpr char kAdminSocketName[] = "twd-admin.sock";

// Parses argv. On --help, prints usage, every flag with its default, and returns options with
// help = true. Errors name the flag.
StatusOr<DaemonOptions> ParseFlags(int argc, char** argv);

// The config file (or defaults) with the flags applied, validated. A --data-dir that is a
// directory stores in `<dir>/twd.data`; otherwise it is the data file or block device itself.
// Without --nvme-capacity or a config file, each data path gets 4 GiB. A client socket moved
// by --socket (or the file) while the admin socket keeps its default path takes the admin
// socket along: `twd-admin.sock` in the client socket's directory.
StatusOr<config::Config> BuildConfig(const DaemonOptions& options);

// `twd-admin.sock` in the directory of `socket_path`.
std::string AdminSocketNextTo(const std::string& socket_path);

// Makes sure both sockets can be created, before anything is formatted or opened: a missing
// default directory (/run/tokenwarehouse) is created with mode 0755; a missing or unwritable
// directory otherwise is an error that names the flag or config field to change.
Status PrepareSocketDirectories(const config::Config& config, const DaemonOptions& options);

}  // namespace tw::twd
