#include "tw/operator/status.h"

#include <algorithm>
#include <cstdint>
#include <ctime>

#include "tw/common/strings.h"
#include "tw/common/units.h"
#include "tw/operator/kube_client.h"
#include "tw/operator/render.h"
#include "tw/operator/spec.h"

namespace tw::op {
namespace {

using nlohmann::json;

json Condition(const json& previous, const std::string& type, bool status,
               const std::string& reason, const std::string& message, int64_t generation,
               const std::string& now) {
  std::string s = status ? "True" : "False";
  std::string transition = now;
  if (previous.is_array()) {
    for (const auto& c : previous) {
      if (c.value("type", "") == type && c.value("status", "") == s &&
          c.contains("lastTransitionTime")) {
        transition = c["lastTransitionTime"].get<std::string>();
      }
    }
  }
  return {{"type", type},
          {"status", s},
          {"observedGeneration", generation},
          {"lastTransitionTime", transition},
          {"reason", reason},
          {"message", message.substr(0, 32768)}};
}

std::string NotReadyReason(const json& pod, bool updated) {
  if (!pod["metadata"].value("deletionTimestamp", "").empty()) return "Terminating";
  if (!updated) return "Outdated";
  const json& st = pod.value("status", json::object());
  std::string phase = st.value("phase", "Pending");
  for (const auto& c : st.value("conditions", json::array())) {
    if (c.value("type", "") == "Ready" && c.value("status", "") != "True") {
      std::string why = c.value("reason", "NotReady");
      std::string msg = c.value("message", "");
      return msg.empty() ? why : StrCat(why, ": ", msg.substr(0, 200));
    }
  }
  return phase == "Running" ? "NotReady" : phase;
}

}  // namespace

std::string_view ToString(Phase p) {
  switch (p) {
    case Phase::kPending:
      return "Pending";
    case Phase::kProgressing:
      return "Progressing";
    case Phase::kReady:
      return "Ready";
    case Phase::kDegraded:
      return "Degraded";
    case Phase::kInvalid:
      return "Invalid";
    case Phase::kTerminating:
      return "Terminating";
  }
  return "Unknown";
}

bool PodReady(const json& pod) {
  if (!pod.value("metadata", json::object()).value("deletionTimestamp", "").empty()) return false;
  for (const auto& c : pod.value("status", json::object()).value("conditions", json::array())) {
    if (c.value("type", "") == "Ready") return c.value("status", "") == "True";
  }
  return false;
}

std::string NowRfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json ComputeStatus(const json& tw, const StatusInputs& in) {
  const json& meta = tw["metadata"];
  int64_t generation = JsonInt(meta, "generation", 0);
  json previous = tw.value("status", json::object()).value("conditions", json::array());
  bool deleting = !meta.value("deletionTimestamp", "").empty();

  int desired = 0;
  bool ds_current = false;
  if (in.daemon_set.is_object()) {
    const json& ds_status = in.daemon_set.value("status", json::object());
    desired = static_cast<int>(
        std::clamp<int64_t>(JsonInt(ds_status, "desiredNumberScheduled", 0), 0, INT32_MAX));
    int64_t ds_gen = JsonInt(in.daemon_set.value("metadata", Json::object()), "generation", 0);
    ds_current = JsonInt(ds_status, "observedGeneration", 0) >= ds_gen;
  }
  int updated = 0;
  int ready = 0;
  std::vector<std::pair<std::string, std::string>> not_ready;
  for (const auto& pod : in.pods) {
    std::string hash =
        pod["metadata"].value("annotations", json::object()).value(kAnnotationTemplateHash, "");
    bool is_updated = !in.template_hash.empty() && hash == in.template_hash &&
                      pod["metadata"].value("deletionTimestamp", "").empty();
    bool is_ready = is_updated && PodReady(pod);
    updated += is_updated;
    ready += is_ready;
    if (!is_ready) {
      std::string node = pod.value("spec", json::object()).value("nodeName", "");
      if (node.empty()) node = pod["metadata"].value("name", "");
      not_ready.emplace_back(node, NotReadyReason(pod, is_updated));
    }
  }
  std::sort(not_ready.begin(), not_ready.end());
  json not_ready_json = json::array();
  for (size_t i = 0; i < not_ready.size() && i < kMaxNotReadyNodes; ++i) {
    not_ready_json.push_back({{"node", not_ready[i].first}, {"reason", not_ready[i].second}});
  }

  json conditions = json::array();
  Phase phase;
  if (!in.config_valid) {
    conditions.push_back(Condition(previous, "ConfigValid", false, in.invalid_reason,
                                   in.invalid_message, generation, in.now));
  } else {
    conditions.push_back(Condition(previous, "ConfigValid", true, "Valid",
                                   "the spec renders a valid twd configuration", generation,
                                   in.now));
  }
  int max_unavailable = ResolveMaxUnavailable(in.max_unavailable, desired);
  bool available = desired > 0 && ready > 0 && ready >= desired - max_unavailable;
  conditions.push_back(Condition(
      previous, "Available", available, available ? "MinimumNodesReady" : "NotEnoughNodesReady",
      StrCat(ready, " of ", desired, " nodes ready (at most ", max_unavailable, " may be down)"),
      generation, in.now));
  bool all_ready = desired > 0 && ready == desired && updated == desired && ds_current;
  conditions.push_back(
      Condition(previous, "AllNodesReady", all_ready, all_ready ? "AllNodesReady" : "NodesNotReady",
                StrCat(ready, " of ", desired, " nodes updated and ready"), generation, in.now));
  bool progressing = in.config_valid && !deleting && desired > 0 && !all_ready &&
                     (!ds_current || updated < desired);
  conditions.push_back(Condition(
      previous, "Progressing", progressing,
      progressing ? "RollingOut" : (desired == 0 ? "NoNodesSelected" : "RolloutComplete"),
      StrCat(updated, " of ", desired, " nodes run the current template"), generation, in.now));

  if (deleting) {
    phase = Phase::kTerminating;
  } else if (!in.config_valid) {
    phase = Phase::kInvalid;
  } else if (desired == 0) {
    phase = Phase::kPending;
  } else if (all_ready) {
    phase = Phase::kReady;
  } else if (progressing) {
    phase = Phase::kProgressing;
  } else {
    phase = Phase::kDegraded;
  }

  json status = {{"observedGeneration", generation}, {"phase", ToString(phase)},
                 {"desiredNodes", desired},          {"readyNodes", ready},
                 {"updatedNodes", updated},          {"notReadyNodes", not_ready_json},
                 {"conditions", conditions}};
  json capacity = json::object();
  if (in.dram_per_node > 0) capacity["dram"] = FormatByteSize(in.dram_per_node * desired);
  if (in.nvme_per_node > 0) capacity["nvme"] = FormatByteSize(in.nvme_per_node * desired);
  status["capacity"] = capacity;
  if (!in.socket_path.empty()) status["socketPath"] = in.socket_path;
  return status;
}

}  // namespace tw::op
