// PodInjector: the mutating admission webhook's decision for one AdmissionReview. A pod
// labelled tokenwarehouse.io/inject=<warehouse> gets, as an RFC 6902 JSON patch:
//   - the ephemeral CSI volume "tokenwarehouse" of driver csi.tokenwarehouse.io, read-only,
//     volumeAttributes.warehouse = "<namespace>/<name>" (what tw-csi resolves);
//   - a read-only mount of it at /run/tokenwarehouse in every container and init container
//     that has no mount at that path yet;
//   - TW_SOCKET=/run/tokenwarehouse/twd.sock in every container that does not set TW_SOCKET;
//   - the socket's group in spec.securityContext.supplementalGroups (when the warehouse's
//     socket.group maps to a gid and the socket mode does not already admit everyone);
//   - the annotation tokenwarehouse.io/injected=<namespace>/<name>.
// Each is added only when missing, so a pod mutated twice is unchanged the second time, and a
// pod that already carries a CSI volume of the driver keeps it (its mounts use that volume).
//
// The warehouse is <label value> in the namespace of the annotation
// tokenwarehouse.io/inject-namespace, else in the pod's namespace. An unknown warehouse, or one
// no tw-csi serves (neither it nor another TokenWarehouse with the same socket.hostDirectory
// has spec.csi.enabled), lets the pod through unchanged with a warning in the response.
// A body that is not an AdmissionReview v1 is a 400.
//
// PlanPodPatch() is a pure function; PodInjector::Review() reads warehouses through a
// WarehouseSource and may be called from any thread concurrently (it keeps no state).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nlohmann/json.hpp"
#include "tw/common/status.h"
#include "tw/operator/spec.h"

namespace tw::op {

inline constexpr char kInjectLabel[] = "tokenwarehouse.io/inject";
inline constexpr char kInjectNamespaceAnnotation[] = "tokenwarehouse.io/inject-namespace";
inline constexpr char kInjectedAnnotation[] = "tokenwarehouse.io/injected";
inline constexpr char kInjectVolumeName[] = "tokenwarehouse";
inline constexpr char kSocketEnv[] = "TW_SOCKET";
// gid of the "disk" group in the twd image (docker/twd.Dockerfile: twd is a member).
inline constexpr int kDiskGid = 6;

// What to inject into one pod.
struct InjectTarget {
  std::string warehouse;                      // "<namespace>/<name>"
  std::optional<int64_t> supplemental_group;  // none: the socket needs no extra group
  std::string warning;  // "" or why the pod may still fail to use the socket (unknown group)
};

// The JSON patch (an array, empty when the pod already has everything) for `pod`, a Pod
// object. InvalidArgument when `pod` has no spec.containers array or a field has the wrong
// type.
StatusOr<nlohmann::json> PlanPodPatch(const nlohmann::json& pod, const InjectTarget& target);

// The gid a client needs to open a warehouse's socket: none when the mode lets everyone
// read and write it; twd's own group (65532) for socket.group "" or "tokenwarehouse"; 6 for
// "disk"; a decimal number as given. NotFound for another name (only twd's image knows it).
StatusOr<std::optional<int64_t>> SocketGroupId(const TokenWarehouseSpec& spec);

// Where the injector finds TokenWarehouse objects (the operator's informer cache).
class WarehouseSource {
 public:
  virtual ~WarehouseSource() = default;
  // The TokenWarehouse, or null when unknown.
  virtual std::shared_ptr<const nlohmann::json> Get(std::string_view ns,
                                                    std::string_view name) const = 0;
  virtual std::vector<std::shared_ptr<const nlohmann::json>> List() const = 0;
  // False until the first list has arrived (an unknown name then says so).
  virtual bool Synced() const = 0;
};

struct ReviewResult {
  int http_status = 200;
  std::string body;  // the AdmissionReview response, or a plain-text error for a 400
  // For the log and tests: what was decided.
  bool patched = false;
  std::vector<std::string> warnings;
};

class PodInjector {
 public:
  // REQUIRES: `source` outlives the injector.
  explicit PodInjector(const WarehouseSource* source) : source_(source) {}

  // Answers one AdmissionReview request body (JSON).
  ReviewResult Review(std::string_view body) const;

  // The target for a pod labelled with `warehouse` in namespace `ns`, or why there is none
  // (the warning text).
  StatusOr<InjectTarget> Resolve(const std::string& ns, const std::string& warehouse) const;

 private:
  const WarehouseSource* source_;
};

}  // namespace tw::op
