// RealTwd — the real twd, in-process, for libtwclient's tests: the daemon (tw/twd/daemon.h:
// ServiceCore, the Unix-socket codec and Server) over the real storage engine (tw_store) in
// a temporary directory, with small DRAM and NVMe tiers and the metrics endpoint on an
// ephemeral port. What a client sees here is what it sees from the `twd` binary.
//
// Threading: Start/Stop from the test thread; the daemon runs its own threads. Lifetime:
// Start() → ... → Stop() or the destructor, which shuts down and removes the directory.
#pragma once

#include <memory>
#include <string>

#include "tw/common/status.h"

namespace tw::twd {
class Daemon;
}
namespace tw::mesh::rdma {
class SoftFabric;
}

namespace tw::client::testing {

class RealTwd {
 public:
  RealTwd();
  ~RealTwd();
  RealTwd(const RealTwd&) = delete;
  RealTwd& operator=(const RealTwd&) = delete;

  // Makes a fresh directory under the system's temp directory and serves from it. With
  // `config_yaml`, twd reads it as its config file (flags still set the socket and data).
  Status Start(const std::string& config_yaml = "");
  // Before Start: mesh.transport rdma/auto opens a port of `fabric` named after
  // mesh.node_name instead of a real device. The fabric must outlive this twd.
  void UseRdmaFabric(mesh::rdma::SoftFabric* fabric) { fabric_ = fabric; }
  void Stop();
  // Shuts twd down and keeps its directory.
  void Shutdown();

  const std::string& socket_path() const { return socket_; }
  const std::string& admin_socket_path() const { return admin_socket_; }
  // The port of /metrics (127.0.0.1).
  int metrics_port() const;
  const std::string& dir() const { return dir_; }
  twd::Daemon* daemon() { return daemon_.get(); }

 private:
  std::string dir_;
  std::string socket_;
  std::string admin_socket_;
  std::unique_ptr<twd::Daemon> daemon_;
  mesh::rdma::SoftFabric* fabric_ = nullptr;
};

}  // namespace tw::client::testing
