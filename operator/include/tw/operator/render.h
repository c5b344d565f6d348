// Rendering: the children of a TokenWarehouse as JSON objects ready for server-side apply —
// the twd ConfigMap, the DaemonSet, the headless Service, the peers ConfigMap and the
// optional ServiceMonitor. Pure functions of (owner object, parsed spec, options): the same
// inputs always give byte-identical JSON (golden-file tests pin them).
//
// Every child carries the common labels, a controller ownerReference to the TokenWarehouse
// (blockOwnerDeletion) and the annotation tokenwarehouse.io/applied-hash, a hash of the rest of
// the object, which lets the reconciler skip applying what is already there. No threading
// rules.
#pragma once

#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tw/operator/spec.h"

namespace tw::op {

inline constexpr char kFieldManager[] = "tw-operator";
inline constexpr char kFinalizer[] = "tokenwarehouse.io/finalizer";
inline constexpr char kLabelName[] = "app.kubernetes.io/name";
inline constexpr char kLabelInstance[] = "app.kubernetes.io/instance";
inline constexpr char kLabelManagedBy[] = "app.kubernetes.io/managed-by";
inline constexpr char kLabelOwner[] = "tokenwarehouse.io/name";
inline constexpr char kManagedByValue[] = "tw-operator";
inline constexpr char kAnnotationAppliedHash[] = "tokenwarehouse.io/applied-hash";
inline constexpr char kAnnotationTemplateHash[] = "tokenwarehouse.io/template-hash";
inline constexpr char kAnnotationConfigHash[] = "tokenwarehouse.io/config-hash";
// On the DaemonSet: "true" while a ServiceMonitor is applied, so turning it off deletes it.
inline constexpr char kAnnotationServiceMonitor[] = "tokenwarehouse.io/service-monitor";

// The CSI driver tw-csi registers (sidecar/csi), and its socket folder in the tw-csi and
// registrar containers.
inline constexpr char kCsiDriverName[] = "csi.tokenwarehouse.io";
inline constexpr char kCsiPluginDir[] = "/csi";

struct RenderOptions {
  // Image used when spec.image is empty.
  std::string default_image = "ghcr.io/tokenwarehouse/twd:latest";
};

// Child object names.
std::string ConfigMapName(const std::string& tw_name);
std::string PeersConfigMapName(const std::string& tw_name);
std::string DaemonSetName(const std::string& tw_name);
std::string ServiceName(const std::string& tw_name);

// Labels on every child and on twd pods (the selector is the subset without managed-by).
nlohmann::json ChildLabels(const std::string& tw_name);
nlohmann::json SelectorLabels(const std::string& tw_name);
// The controller ownerReference to `tw`.
nlohmann::json OwnerReference(const nlohmann::json& tw);

// Host path of the socket directory and of the socket itself.
std::string SocketHostDirectory(const nlohmann::json& tw, const TokenWarehouseSpec& spec);
std::string SocketHostPath(const nlohmann::json& tw, const TokenWarehouseSpec& spec);

// A short stable hash (16 hex digits, FNV-1a 64) of a string.
std::string StableHash(std::string_view data);

nlohmann::json RenderConfigMap(const nlohmann::json& tw, const TokenWarehouseSpec& spec);
nlohmann::json RenderService(const nlohmann::json& tw, const TokenWarehouseSpec& spec);
nlohmann::json RenderDaemonSet(const nlohmann::json& tw, const TokenWarehouseSpec& spec,
                               const RenderOptions& options);
nlohmann::json RenderServiceMonitor(const nlohmann::json& tw, const TokenWarehouseSpec& spec);

struct Peer {
  std::string node;
  std::string address;
  uint32_t port = 0;
};
// The peers file body: {"peers":[{"node","address","port"}]} sorted by node.
std::string RenderPeersJson(std::vector<Peer> peers);
nlohmann::json RenderPeersConfigMap(const nlohmann::json& tw, const std::vector<Peer>& peers);

// Adds the applied-hash annotation (hash of the object without it) and returns the hash.
std::string StampAppliedHash(nlohmann::json& object);

}  // namespace tw::op
