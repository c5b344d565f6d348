// SocketVolumes: what tw-csi's NodePublishVolume and NodeUnpublishVolume do, on domain types.
// A "volume" is one warehouse's socket directory, bind-mounted read-only at a pod's target
// path, so that a pod gets twd's socket without a hostPath volume.
//
// The socket root (twd's `spec.socket.hostDirectory`, e.g. /run/tokenwarehouse) holds one
// directory per TokenWarehouse: <root>/<namespace>/<name>/ (docs/inference-pods.md). A publish
// names its warehouse as "<namespace>/<name>" or "<name>" (in the pod's namespace), or names
// none: then the only warehouse of the pod's namespace on this node, else the only one on the
// node. Anything else is an error that says what is there.
//
// Thread-safe: one mutex serialises every publish and unpublish (the kubelet calls are rare
// and each is a handful of syscalls). Lifetime: the Mounter must outlive this object.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "tw/common/status.h"
#include "tw/csi/mounter.h"

namespace tw::csi {

struct PublishRequest {
  std::string volume_id;      // the CO's id of the volume (kubelet: csi-<hash> for ephemeral)
  std::string target_path;    // absolute; created here when absent, removed on unpublish
  std::string warehouse;      // "<namespace>/<name>", "<name>", or empty (see above)
  std::string pod_namespace;  // from podInfoOnMount; empty when the CO does not say
};

class SocketVolumes {
 public:
  // `socket_root`: absolute path of the directory that holds <namespace>/<name>/ folders.
  SocketVolumes(std::string socket_root, Mounter* mounter);

  // The directory of the warehouse a publish names (see the class comment). InvalidArgument
  // for a malformed name, NotFound for a named warehouse that is not on this node,
  // FailedPrecondition when none was named and zero or several could be meant.
  StatusOr<std::string> ResolveWarehouse(const std::string& warehouse,
                                         const std::string& pod_namespace) const;

  // Bind-mounts the warehouse directory read-only at the target path (creating the target
  // directory). Idempotent: the same directory already mounted there is OK; a different one
  // is AlreadyExists.
  Status Publish(const PublishRequest& request);

  // Unmounts the target path and removes the directory. Idempotent: an absent target is OK.
  // A target that is not mounted and not an empty directory is left alone (FailedPrecondition):
  // it was not made by this driver.
  Status Unpublish(const std::string& volume_id, const std::string& target_path);

  // The warehouses on this node, "<namespace>/<name>", sorted.
  std::vector<std::string> ListWarehouses() const;

 private:
  const std::string socket_root_;
  Mounter* const mounter_;
  std::mutex mu_;  // serialises Publish and Unpublish
};

}  // namespace tw::csi
