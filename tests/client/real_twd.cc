#include "real_twd.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "tw/mesh/rdma/soft_verbs.h"
#include "tw/store/store.h"
#include "tw/twd/daemon.h"

namespace tw::client::testing {

RealTwd::RealTwd() = default;

RealTwd::~RealTwd() { Stop(); }

Status RealTwd::Start(const std::string& config_yaml) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "twclient-realtwd.XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return ErrnoStatus(errno, "mkdtemp");
  dir_ = tmpl;
  socket_ = dir_ + "/twd.sock";
  admin_socket_ = dir_ + "/twd-admin.sock";
  std::filesystem::create_directories(dir_ + "/data");
  twd::DaemonOptions o;
  if (!config_yaml.empty()) {
    o.config_path = dir_ + "/twd.yaml";
    std::ofstream(o.config_path) << config_yaml;
  }
  o.socket = socket_;
  o.admin_socket = admin_socket_;
  o.data_dirs = {dir_ + "/data"};
  o.dram_capacity = uint64_t{64} << 20;
  o.nvme_capacity = uint64_t{256} << 20;
  o.metrics_address = "127.0.0.1:0";
  o.log_level = "warn";
  o.workers = 4;
  twd::StoreHooks hooks;
  hooks.open = [](const config::Config& c) {
    return store::Store::Open(twd::StoreOptionsFromConfig(c));
  };
  hooks.reconfigure = [](store::Store& s, const config::Config& c) {
    return s.Reconfigure(twd::StoreOptionsFromConfig(c));
  };
  if (fabric_ != nullptr) {
    hooks.open_rdma = [fabric = fabric_](
                          const config::Config& c) -> StatusOr<std::unique_ptr<mesh::rdma::Verbs>> {
      return fabric->OpenDevice(c.mesh.node_name);
    };
  }
  TW_ASSIGN_OR_RETURN(daemon_, twd::Daemon::Start(o, std::move(hooks)));
  return OkStatus();
}

void RealTwd::Shutdown() {
  if (daemon_) {
    daemon_->Shutdown().IgnoreError();
    daemon_.reset();
  }
}

void RealTwd::Stop() {
  Shutdown();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }
}

int RealTwd::metrics_port() const { return daemon_ ? daemon_->metrics_port() : 0; }

}  // namespace tw::client::testing
