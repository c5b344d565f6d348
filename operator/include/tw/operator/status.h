// Status computation: what .status of a TokenWarehouse should say, from the object, the
// outcome of checking its spec, its DaemonSet and its twd pods.
//
// Conditions are metav1.Conditions (type, status, observedGeneration, lastTransitionTime,
// reason, message); lastTransitionTime only moves when a condition's status changes, so a
// status computed twice from the same world is identical and the reconciler writes status
// only when it differs. Only pods that run the current template (annotation
// tokenwarehouse.io/template-hash) and are Ready count as ready nodes. Pure functions; no
// threading rules.
#pragma once

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace tw::op {

inline constexpr size_t kMaxNotReadyNodes = 50;

enum class Phase {
  kPending,      // nothing scheduled yet (no DaemonSet status or no matching node)
  kProgressing,  // a rollout is under way
  kReady,        // every desired node runs the current template and is ready
  kDegraded,     // rollout finished but some nodes are not ready
  kInvalid,      // the spec is refused (ConfigValid=False)
  kTerminating,  // deletion in progress
};
std::string_view ToString(Phase p);

struct StatusInputs {
  // Whether the spec is usable; when false, `invalid_reason`/`invalid_message` say why.
  bool config_valid = true;
  std::string invalid_reason;
  std::string invalid_message;
  // The DaemonSet as cached (null when absent).
  nlohmann::json daemon_set;
  // Pods of this TokenWarehouse.
  std::vector<nlohmann::json> pods;
  // The template hash of the DaemonSet the operator applies ("" when none was rendered).
  std::string template_hash;
  // Total configured capacity of each tier per node (0 = tier absent) and the socket path.
  uint64_t dram_per_node = 0;
  uint64_t nvme_per_node = 0;
  std::string socket_path;
  // spec.updateStrategy.maxUnavailable as given.
  nlohmann::json max_unavailable = 1;
  // RFC 3339 "now", used only for conditions that change status.
  std::string now;
};

// The new .status for `tw` (its current .status supplies previous transition times).
nlohmann::json ComputeStatus(const nlohmann::json& tw, const StatusInputs& in);

// Whether a pod is Ready (condition Ready=True) and not being deleted.
bool PodReady(const nlohmann::json& pod);

// RFC 3339 UTC time, seconds precision.
std::string NowRfc3339();

}  // namespace tw::op
