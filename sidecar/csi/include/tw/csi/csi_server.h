// CsiServer: tw-csi's gRPC server, the CSI spec's Identity and Node services (proto/csi/) for
// a node-only driver whose only volumes are ephemeral inline volumes (docs/inference-pods.md).
// The services are thin adapters: they check the request as the spec asks, then call
// SocketVolumes (socket_volumes.h), which knows nothing of protobuf or gRPC. Every Controller,
// staging, stats and expansion call answers UNIMPLEMENTED, and no capability is declared for
// them, as the spec requires of a plugin that does not offer them.
//
// Threading: gRPC's sync server calls the handlers from its own threads; SocketVolumes
// serialises the mount work. Lifetime: Start() returns a running server; Shutdown() (also run
// by the destructor) stops it and removes the socket file. The Mounter must outlive it.
#pragma once

#include <memory>
#include <string>

#include "tw/common/status.h"
#include "tw/csi/mounter.h"

namespace tw::csi {

inline constexpr char kDriverName[] = "csi.tokenwarehouse.io";

struct CsiServerOptions {
  std::string endpoint;     // unix:///ABSOLUTE/PATH (the socket is created, a stale one replaced)
  std::string node_id;      // answered by NodeGetInfo: the Kubernetes node name; <= 256 bytes
  std::string socket_root;  // absolute; holds <namespace>/<name>/ socket folders of twd
  std::string vendor_version;  // answered by GetPluginInfo
  Status Validate() const;
};

// The socket path of a `unix://` endpoint; InvalidArgument names what is wrong otherwise.
StatusOr<std::string> UnixEndpointPath(const std::string& endpoint);

class CsiServer {
 public:
  // REQUIRES: options.Validate().ok() (checked again: an invalid option is an error here).
  static StatusOr<std::unique_ptr<CsiServer>> Start(const CsiServerOptions& options,
                                                    Mounter* mounter);
  ~CsiServer();
  CsiServer(const CsiServer&) = delete;
  CsiServer& operator=(const CsiServer&) = delete;

  // Stops serving (in-flight calls finish) and removes the socket file. Idempotent.
  void Shutdown();

 private:
  struct Impl;
  explicit CsiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tw::csi
