#include "tw/csi/csi_server.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

#include "csi/csi.grpc.pb.h"
#include "tw/common/log.h"
#include "tw/csi/socket_volumes.h"

namespace tw::csi {
namespace {

// The volume attributes kubelet adds itself when the CSIDriver object asks for pod info.
constexpr std::string_view kKubeletAttributePrefix = "csi.storage.k8s.io/";
constexpr char kPodNamespaceAttribute[] = "csi.storage.k8s.io/pod.namespace";
constexpr char kWarehouseAttribute[] = "warehouse";

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())),
                      std::string(s.message()));
}

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

grpc::Status NotOffered(const char* rpc) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      std::string(rpc) + " is not offered: " + kDriverName +
                          " is a node-only driver of ephemeral inline volumes");
}

class IdentityService final : public ::csi::v1::Identity::Service {
 public:
  explicit IdentityService(const CsiServerOptions& options) : options_(options) {}

  grpc::Status GetPluginInfo(grpc::ServerContext*, const ::csi::v1::GetPluginInfoRequest*,
                             ::csi::v1::GetPluginInfoResponse* response) override {
    response->set_name(kDriverName);
    response->set_vendor_version(options_.vendor_version);
    return grpc::Status::OK;
  }

  // No CONTROLLER_SERVICE, no VOLUME_ACCESSIBILITY_CONSTRAINTS: every node serves its own
  // warehouses, and volumes are never provisioned or attached.
  grpc::Status GetPluginCapabilities(grpc::ServerContext*,
                                     const ::csi::v1::GetPluginCapabilitiesRequest*,
                                     ::csi::v1::GetPluginCapabilitiesResponse*) override {
    return grpc::Status::OK;
  }

  // Ready once the socket root exists: without it no publish can succeed.
  grpc::Status Probe(grpc::ServerContext*, const ::csi::v1::ProbeRequest*,
                     ::csi::v1::ProbeResponse* response) override {
    struct stat st {};
    if (::stat(options_.socket_root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "socket root " + options_.socket_root + " is not a directory");
    }
    response->mutable_ready()->set_value(true);
    return grpc::Status::OK;
  }

 private:
  const CsiServerOptions options_;
};

class NodeService final : public ::csi::v1::Node::Service {
 public:
  NodeService(const CsiServerOptions& options, Mounter* mounter)
      : options_(options), volumes_(options.socket_root, mounter) {}

  grpc::Status NodePublishVolume(grpc::ServerContext*,
                                 const ::csi::v1::NodePublishVolumeRequest* request,
                                 ::csi::v1::NodePublishVolumeResponse*) override {
    if (request->volume_id().empty()) return Invalid("volume_id is required");
    if (request->target_path().empty()) return Invalid("target_path is required");
    if (!request->has_volume_capability()) return Invalid("volume_capability is required");
    const auto& capability = request->volume_capability();
    if (capability.has_block()) {
      return Invalid(
          "block access is not supported: the volume is a directory holding "
          "twd's socket (use a mount capability)");
    }
    if (!capability.has_mount()) return Invalid("volume_capability has no access type");
    if (!capability.has_access_mode() ||
        capability.access_mode().mode() == ::csi::v1::VolumeCapability::AccessMode::UNKNOWN) {
      return Invalid("volume_capability.access_mode is required");
    }
    PublishRequest publish;
    publish.volume_id = request->volume_id();
    publish.target_path = request->target_path();
    for (const auto& [key, value] : request->volume_context()) {
      if (key == kWarehouseAttribute) {
        publish.warehouse = value;
      } else if (key == kPodNamespaceAttribute) {
        publish.pod_namespace = value;
      } else if (!std::string_view(key).starts_with(kKubeletAttributePrefix)) {
        return Invalid("unknown volume attribute \"" + key + "\" (" + kDriverName +
                       " takes only \"warehouse\")");
      }
    }
    Status s = volumes_.Publish(publish);
    TW_LOG(kInfo, s.ok() ? "volume published" : "volume publish failed",
           {{"volume_id", publish.volume_id},
            {"target", publish.target_path},
            {"warehouse", publish.warehouse},
            {"pod_namespace", publish.pod_namespace},
            {"status", s}});
    return ToGrpc(s);
  }

  grpc::Status NodeUnpublishVolume(grpc::ServerContext*,
                                   const ::csi::v1::NodeUnpublishVolumeRequest* request,
                                   ::csi::v1::NodeUnpublishVolumeResponse*) override {
    if (request->volume_id().empty()) return Invalid("volume_id is required");
    if (request->target_path().empty()) return Invalid("target_path is required");
    Status s = volumes_.Unpublish(request->volume_id(), request->target_path());
    TW_LOG(
        kInfo, s.ok() ? "volume unpublished" : "volume unpublish failed",
        {{"volume_id", request->volume_id()}, {"target", request->target_path()}, {"status", s}});
    return ToGrpc(s);
  }

  // No capability: no staging, no stats, no expansion, no health, one writer mode only.
  grpc::Status NodeGetCapabilities(grpc::ServerContext*,
                                   const ::csi::v1::NodeGetCapabilitiesRequest*,
                                   ::csi::v1::NodeGetCapabilitiesResponse*) override {
    return grpc::Status::OK;
  }

  grpc::Status NodeGetInfo(grpc::ServerContext*, const ::csi::v1::NodeGetInfoRequest*,
                           ::csi::v1::NodeGetInfoResponse* response) override {
    response->set_node_id(options_.node_id);
    return grpc::Status::OK;
  }

  grpc::Status NodeStageVolume(grpc::ServerContext*, const ::csi::v1::NodeStageVolumeRequest*,
                               ::csi::v1::NodeStageVolumeResponse*) override {
    return NotOffered("NodeStageVolume");
  }
  grpc::Status NodeUnstageVolume(grpc::ServerContext*, const ::csi::v1::NodeUnstageVolumeRequest*,
                                 ::csi::v1::NodeUnstageVolumeResponse*) override {
    return NotOffered("NodeUnstageVolume");
  }
  grpc::Status NodeGetVolumeStats(grpc::ServerContext*, const ::csi::v1::NodeGetVolumeStatsRequest*,
                                  ::csi::v1::NodeGetVolumeStatsResponse*) override {
    return NotOffered("NodeGetVolumeStats");
  }
  grpc::Status NodeExpandVolume(grpc::ServerContext*, const ::csi::v1::NodeExpandVolumeRequest*,
                                ::csi::v1::NodeExpandVolumeResponse*) override {
    return NotOffered("NodeExpandVolume");
  }

 private:
  const CsiServerOptions options_;
  SocketVolumes volumes_;
};

}  // namespace

Status CsiServerOptions::Validate() const {
  TW_RETURN_IF_ERROR(UnixEndpointPath(endpoint).status());
  if (node_id.empty()) return InvalidArgumentError("--node-id is required");
  if (node_id.size() > 256) return InvalidArgumentError("--node-id is longer than 256 bytes");
  if (socket_root.empty() || socket_root.front() != '/') {
    return InvalidArgumentError("--socket-root must be an absolute path, not \"" + socket_root +
                                "\"");
  }
  return OkStatus();
}

StatusOr<std::string> UnixEndpointPath(const std::string& endpoint) {
  constexpr std::string_view kScheme = "unix://";
  if (!std::string_view(endpoint).starts_with(kScheme)) {
    return InvalidArgumentError("--endpoint \"" + endpoint +
                                "\" is not unix:///ABSOLUTE/PATH (CSI plugins listen on a Unix "
                                "socket)");
  }
  std::string path = endpoint.substr(kScheme.size());
  if (path.empty() || path.front() != '/' || path.back() == '/') {
    return InvalidArgumentError("--endpoint \"" + endpoint +
                                "\" does not name an absolute socket path after unix://");
  }
  return path;
}

struct CsiServer::Impl {
  CsiServerOptions options;
  std::string socket_path;
  std::unique_ptr<IdentityService> identity;
  std::unique_ptr<NodeService> node;
  std::unique_ptr<grpc::Server> server;
  std::once_flag shutdown_once;
};

CsiServer::CsiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CsiServer::~CsiServer() { Shutdown(); }

StatusOr<std::unique_ptr<CsiServer>> CsiServer::Start(const CsiServerOptions& options,
                                                      Mounter* mounter) {
  TW_RETURN_IF_ERROR(options.Validate());
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  TW_ASSIGN_OR_RETURN(impl->socket_path, UnixEndpointPath(options.endpoint));
  // A socket left by an earlier run (the kubelet plugin dir outlives the container) is
  // replaced; anything else at that path is not ours to remove.
  struct stat st {};
  if (::lstat(impl->socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return FailedPreconditionError(impl->socket_path + " exists and is not a socket");
    }
    if (::unlink(impl->socket_path.c_str()) != 0) {
      return ErrnoStatus(errno, "remove stale socket " + impl->socket_path);
    }
  }
  impl->identity = std::make_unique<IdentityService>(options);
  impl->node = std::make_unique<NodeService>(options, mounter);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.endpoint, grpc::InsecureServerCredentials());
  builder.RegisterService(impl->identity.get());
  builder.RegisterService(impl->node.get());
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr) {
    return UnavailableError("could not listen on " + options.endpoint);
  }
  TW_LOG(kInfo, "tw-csi listening",
         {{"endpoint", options.endpoint},
          {"node_id", options.node_id},
          {"socket_root", options.socket_root}});
  return std::unique_ptr<CsiServer>(new CsiServer(std::move(impl)));
}

void CsiServer::Shutdown() {
  std::call_once(impl_->shutdown_once, [this] {
    impl_->server->Shutdown();
    ::unlink(impl_->socket_path.c_str());
  });
}

}  // namespace tw::csi
