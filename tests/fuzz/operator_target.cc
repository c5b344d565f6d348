// Fuzz body of the operator's reading of API-server JSON (a hostile or buggy API server, or a
// TokenWarehouse written by anyone with create rights, is outside input). The input is one
// JSON document: an object is a TokenWarehouse; an array is [TokenWarehouse, DaemonSet,
// pod, pod, ...]. The body does what the informer and the reconciler do with them: the
// informer's Malformed() gate, ParseSpec, CheckSpec, every render, the status from the
// DaemonSet and pods, and an API error body. JSON type errors may throw (the reconciler
// catches json::exception and counts a malformed object); anything else escaping is a bug.
// A spec that CheckSpec accepts renders a twd config that tw_config parses.
#include <string>
#include <vector>

#include "fuzz_targets.h"
#include "nlohmann/json.hpp"
#include "tw/common/config.h"
#include "tw/operator/informer.h"
#include "tw/operator/kube_client.h"
#include "tw/operator/render.h"
#include "tw/operator/spec.h"
#include "tw/operator/status.h"

namespace tw::fuzz {
namespace {

using nlohmann::json;

int Reconcile(const json& tw, const json& daemon_set, const std::vector<json>& pods) {
  op::StatusInputs in;
  in.now = "2026-01-01T00:00:00Z";
  in.daemon_set = daemon_set;
  in.pods = pods;
  int accepted = 0;
  auto spec = op::ParseSpec(tw.value("spec", json()));
  if (!spec.ok()) {
    in.config_valid = false;
    in.invalid_reason = "InvalidSpec";
    in.invalid_message = std::string(spec.status().message());
  } else {
    op::SpecCheck check = op::CheckSpec(*spec);
    in.max_unavailable = spec->max_unavailable;
    in.socket_path = op::SocketHostPath(tw, *spec);
    if (check.problem != op::SpecProblem::kNone) {
      in.config_valid = false;
      in.invalid_reason = std::string(op::ToString(check.problem));
      in.invalid_message = check.message;
    } else {
      ++accepted;
      json cm = op::RenderConfigMap(tw, *spec);
      // The operator and twd share tw_config: what the operator writes, twd reads.
      if (!config::ParseYaml(cm["data"][op::kConfigFile].get<std::string>()).ok()) {
        __builtin_trap();
      }
      std::vector<op::Peer> peers;
      for (const json& pod : pods) {
        if (!op::PodReady(pod)) continue;
        std::string ip = pod.value("status", json::object()).value("podIP", "");
        std::string node = pod.value("spec", json::object()).value("nodeName", "");
        if (!ip.empty() && !node.empty()) peers.push_back({node, ip, spec->federation_port});
      }
      (void)op::RenderPeersConfigMap(tw, peers);
      (void)op::RenderService(tw, *spec);
      json ds = op::RenderDaemonSet(tw, *spec, op::RenderOptions{});
      in.template_hash =
          ds["spec"]["template"]["metadata"]["annotations"][op::kAnnotationTemplateHash];
      if (spec->service_monitor) (void)op::RenderServiceMonitor(tw, *spec);
      (void)op::ResolveMaxUnavailable(spec->max_unavailable, static_cast<int>(pods.size()));
    }
  }
  (void)op::ComputeStatus(tw, in);
  return accepted;
}

}  // namespace

int FuzzOperatorJson(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  (void)op::ApiError(409, text).ok();
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return 0;
  json tw = doc, daemon_set;
  std::vector<json> pods;
  if (doc.is_array() && !doc.empty()) {
    tw = doc[0];
    if (doc.size() > 1) daemon_set = doc[1];
    for (size_t i = 2; i < doc.size(); ++i) pods.push_back(doc[i]);
  }
  // The informer never hands on a malformed object.
  if (!op::Informer::Malformed(tw).empty()) return 0;
  if (op::Informer::KeyOf(tw).empty()) __builtin_trap();
  for (const json& o : pods) {
    if (!op::Informer::Malformed(o).empty()) return 0;
  }
  if (!daemon_set.is_null() && !op::Informer::Malformed(daemon_set).empty()) return 0;
  try {
    return 1 + Reconcile(tw, daemon_set, pods);
  } catch (const json::exception&) {
    return 0;  // the reconciler's guard: counted as a malformed object, retried later
  }
}

}  // namespace tw::fuzz
