#include "tw/operator/reconciler.h"

#include <set>

#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/operator/status.h"

namespace tw::op {
namespace {

using nlohmann::json;

const json& Meta(const json& o) {
  static const json kEmpty = json::object();
  auto it = o.find("metadata");
  return it == o.end() ? kEmpty : *it;
}

std::string AppliedHash(const json& o) {
  return Meta(o).value("annotations", json::object()).value(kAnnotationAppliedHash, "");
}

bool HasFinalizer(const json& tw) {
  for (const auto& f : Meta(tw).value("finalizers", json::array())) {
    if (f == kFinalizer) return true;
  }
  return false;
}

// Could two node selectors pick the same node? Only a key both name with different values
// rules it out (affinity and taints are not considered: the check errs towards refusing).
bool SelectorsOverlap(const json& a, const json& b) {
  if (!a.is_object() || !b.is_object()) return true;
  for (const auto& [k, v] : a.items()) {
    auto it = b.find(k);
    if (it != b.end() && *it != v) return false;
  }
  return true;
}

std::set<std::string> HostPaths(const json& spec) {
  std::set<std::string> out;
  const json& devices = spec.value("tiers", json::object())
                            .value("nvme", json::object())
                            .value("devices", json::array());
  if (!devices.is_array()) return out;
  for (const auto& d : devices) {
    if (d.is_object() && d.contains("hostPath") && d["hostPath"].is_string()) {
      out.insert(d["hostPath"].get<std::string>());
    }
  }
  return out;
}

// True when `a` was created before `b` (ties broken by namespace/name).
bool OlderThan(const json& a, const json& b) {
  std::string ta = Meta(a).value("creationTimestamp", "");
  std::string tb = Meta(b).value("creationTimestamp", "");
  if (ta != tb) return ta < tb;
  return Informer::KeyOf(a) < Informer::KeyOf(b);
}

}  // namespace

Reconciler::Reconciler(KubeClient* client, Caches caches, RenderOptions options)
    : client_(client), caches_(caches), options_(std::move(options)) {}

std::vector<Json> Reconciler::PodsOf(const std::string& ns, const std::string& name) const {
  std::vector<Json> out;
  for (const auto& pod : caches_.pods->List()) {
    const json& meta = Meta(*pod);
    if (meta.value("namespace", "") != ns) continue;
    if (meta.value("labels", json::object()).value(kLabelOwner, "") != name) continue;
    out.push_back(*pod);
  }
  return out;
}

std::vector<std::string> Reconciler::ConflictedKeys() const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::vector<std::string>(conflicted_.begin(), conflicted_.end());
}

void Reconciler::NoteConflict(const std::string& key, bool conflicted) {
  std::lock_guard<std::mutex> lock(mu_);
  if (conflicted) {
    conflicted_.insert(key);
  } else {
    conflicted_.erase(key);
  }
}

std::string Reconciler::FindNvmeConflict(const Json& tw, const TokenWarehouseSpec& spec) const {
  std::set<std::string> mine;
  for (const auto& d : spec.nvme_devices) {
    if (!d.host_path.empty()) mine.insert(d.host_path);
  }
  if (mine.empty()) return "";
  std::string my_key = Informer::KeyOf(tw);
  for (const auto& other : caches_.tokenwarehouses->List()) {
    if (Informer::KeyOf(*other) == my_key) continue;
    if (!Meta(*other).value("deletionTimestamp", "").empty()) continue;
    if (!OlderThan(*other, tw)) continue;
    const json& other_spec = other->value("spec", json::object());
    if (!SelectorsOverlap(spec.node_selector, other_spec.value("nodeSelector", json::object()))) {
      continue;
    }
    for (const auto& path : HostPaths(other_spec)) {
      if (mine.count(path)) {
        return StrCat("NVMe path ", path, " is already used by TokenWarehouse ",
                      Informer::KeyOf(*other), " on nodes this one would also run on");
      }
    }
  }
  return "";
}

Status Reconciler::EnsureFinalizer(Json& tw) {
  const std::string ns = Meta(tw).value("namespace", "");
  const std::string name = Meta(tw).value("name", "");
  for (int attempt = 0; !HasFinalizer(tw); ++attempt) {
    json finalizers = Meta(tw).value("finalizers", json::array());
    finalizers.push_back(kFinalizer);
    json patch = {
        {"metadata",
         {{"finalizers", finalizers}, {"resourceVersion", Meta(tw).value("resourceVersion", "")}}}};
    auto updated = client_->MergePatch(kinds::kTokenWarehouse, ns, name, patch);
    if (updated.ok()) {
      tw = std::move(*updated);
      break;
    }
    // The cache was behind: re-read and try again (a few times, then requeue).
    if (!IsConflict(updated.status()) || attempt >= 3) return updated.status();
    TW_ASSIGN_OR_RETURN(tw, client_->Get(kinds::kTokenWarehouse, ns, name));
  }
  return OkStatus();
}

StatusOr<ReconcileResult> Reconciler::Finalize(const Json& tw) {
  const std::string ns = Meta(tw).value("namespace", "");
  const std::string name = Meta(tw).value("name", "");
  if (!HasFinalizer(tw)) return ReconcileResult{};
  struct Child {
    const ResourceType* type;
    Informer* cache;
    std::string name;
  };
  const Child children[] = {
      {&kinds::kDaemonSet, caches_.daemon_sets, DaemonSetName(name)},
      {&kinds::kConfigMap, caches_.config_maps, ConfigMapName(name)},
      {&kinds::kConfigMap, caches_.config_maps, PeersConfigMapName(name)},
      {&kinds::kService, caches_.services, ServiceName(name)},
  };
  bool remaining = false;
  for (const auto& c : children) {
    ObjectPtr cached = c.cache->Get(ns, c.name);
    if (cached == nullptr) continue;
    remaining = true;
    if (!Meta(*cached).value("deletionTimestamp", "").empty()) continue;
    Status s = client_->Delete(*c.type, ns, c.name, "Background");
    if (!s.ok() && s.code() != StatusCode::kNotFound) return s;
  }
  // The ServiceMonitor is not cached: delete it blindly (404 when absent or no CRD).
  Status sm = client_->Delete(kinds::kServiceMonitor, ns, ServiceName(name), "Background");
  if (!sm.ok() && sm.code() != StatusCode::kNotFound) {
    TW_LOG(kWarn, "deleting ServiceMonitor failed",
           {{"tokenwarehouse", ns + "/" + name}, {"error", sm}});
  }
  if (remaining) {
    // Child deletions arrive as events too; the requeue is a safety net.
    return ReconcileResult{std::chrono::seconds(1)};
  }
  json finalizers = json::array();
  for (const auto& f : Meta(tw).value("finalizers", json::array())) {
    if (f != kFinalizer) finalizers.push_back(f);
  }
  json patch = {
      {"metadata",
       {{"finalizers", finalizers}, {"resourceVersion", Meta(tw).value("resourceVersion", "")}}}};
  auto patched = client_->MergePatch(kinds::kTokenWarehouse, ns, name, patch);
  if (!patched.ok() && patched.status().code() != StatusCode::kNotFound) return patched.status();
  TW_LOG(kInfo, "finalized", {{"tokenwarehouse", ns + "/" + name}});
  return ReconcileResult{};
}

void Reconciler::ForceApplyNextPass(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  force_apply_.insert(key);
}

Status Reconciler::ApplyIfChanged(const ResourceType& type, Informer* cache, Json desired,
                                  bool force) {
  const std::string ns = Meta(desired).value("namespace", "");
  const std::string name = Meta(desired).value("name", "");
  if (cache != nullptr && !force) {
    ObjectPtr cached = cache->Get(ns, name);
    if (cached != nullptr && AppliedHash(*cached) == AppliedHash(desired) &&
        Meta(*cached).value("deletionTimestamp", "").empty()) {
      return OkStatus();
    }
  }
  ++applies_;
  // Unforced first, so that a field another manager took over is noticed: the conflict is
  // logged (which fields, which manager), then the operator's value is applied with force.
  auto applied = client_->Apply(type, ns, name, desired, kFieldManager, /*force=*/false);
  if (applied.ok() || !IsConflict(applied.status())) return applied.status();
  TW_LOG(kWarn, "field conflict: taking back fields another manager changed",
         {{"kind", desired.value("kind", "")},
          {"object", ns + "/" + name},
          {"conflict", applied.status().message()}});
  return client_->Apply(type, ns, name, desired, kFieldManager, /*force=*/true).status();
}

Status Reconciler::WriteStatus(const Json& tw, const Json& status) {
  if (tw.value("status", json::object()) == status) return OkStatus();
  const std::string ns = Meta(tw).value("namespace", "");
  const std::string name = Meta(tw).value("name", "");
  json object = tw;
  for (int attempt = 0; attempt < 5; ++attempt) {
    object["status"] = status;
    auto written = client_->UpdateStatus(kinds::kTokenWarehouse, ns, name, object);
    if (written.ok()) {
      ++status_writes_;
      return OkStatus();
    }
    if (!IsConflict(written.status())) return written.status();
    TW_ASSIGN_OR_RETURN(object, client_->Get(kinds::kTokenWarehouse, ns, name));
    if (object.value("status", json::object()) == status) return OkStatus();
  }
  return FailedPreconditionError(StrCat("status of ", ns, "/", name, ": conflicts persisted"));
}

StatusOr<ReconcileResult> Reconciler::Reconcile(const std::string& key) {
  try {
    return ReconcileUnguarded(key);
  } catch (const json::exception& e) {
    ++malformed_objects_;
    TW_LOG(kWarn, "malformed object from the API server",
           {{"tokenwarehouse", key}, {"error", e.what()}});
    return InvalidArgumentError(
        StrCat(key, ": an object from the API server has a field of the wrong type: ", e.what()));
  }
}

StatusOr<ReconcileResult> Reconciler::ReconcileUnguarded(const std::string& key) {
  auto parts = SplitOnce(key, '/');
  if (parts.size() != 2) return InvalidArgumentError(StrCat("bad key \"", key, "\""));
  const std::string ns(parts[0]), name(parts[1]);
  ObjectPtr cached = caches_.tokenwarehouses->Get(ns, name);
  if (cached == nullptr) {
    NoteConflict(key, false);
    return ReconcileResult{};  // gone: owner references clean the rest
  }
  Json tw = *cached;
  if (!Meta(tw).value("deletionTimestamp", "").empty()) {
    NoteConflict(key, false);
    return Finalize(tw);
  }
  TW_RETURN_IF_ERROR(EnsureFinalizer(tw));

  StatusInputs in;
  in.now = NowRfc3339();
  in.daemon_set = nullptr;
  auto spec = ParseSpec(tw.value("spec", json()));
  if (!spec.ok()) {
    in.config_valid = false;
    in.invalid_reason = "InvalidSpec";
    in.invalid_message = std::string(spec.status().message());
  } else {
    SpecCheck check = CheckSpec(*spec);
    std::string conflict;
    if (check.problem == SpecProblem::kNone) conflict = FindNvmeConflict(tw, *spec);
    if (check.problem != SpecProblem::kNone) {
      in.config_valid = false;
      in.invalid_reason = std::string(ToString(check.problem));
      in.invalid_message = check.message;
    } else if (!conflict.empty()) {
      in.config_valid = false;
      in.invalid_reason = "NvmePathConflict";
      in.invalid_message = conflict;
    }
    NoteConflict(key, !conflict.empty());
    in.max_unavailable = spec->max_unavailable;
    in.dram_per_node = spec->has_dram ? spec->dram_capacity : 0;
    for (const auto& d : spec->nvme_devices) in.nvme_per_node += d.capacity;
    in.socket_path = SocketHostPath(tw, *spec);
  }

  std::vector<Json> pods = PodsOf(ns, name);
  bool force = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    force = force_apply_.erase(key) > 0;
  }
  if (in.config_valid) {
    TW_RETURN_IF_ERROR(
        ApplyIfChanged(kinds::kConfigMap, caches_.config_maps, RenderConfigMap(tw, *spec), force));
    std::vector<Peer> peers;
    for (const auto& pod : pods) {
      std::string ip = pod.value("status", json::object()).value("podIP", "");
      std::string node = pod.value("spec", json::object()).value("nodeName", "");
      if (PodReady(pod) && !ip.empty() && !node.empty()) {
        peers.push_back({node, ip, spec->federation_port});
      }
    }
    TW_RETURN_IF_ERROR(ApplyIfChanged(kinds::kConfigMap, caches_.config_maps,
                                      RenderPeersConfigMap(tw, peers), force));
    TW_RETURN_IF_ERROR(
        ApplyIfChanged(kinds::kService, caches_.services, RenderService(tw, *spec), force));
    ObjectPtr cached_ds = caches_.daemon_sets->Get(ns, DaemonSetName(name));
    bool had_service_monitor =
        cached_ds != nullptr && Meta(*cached_ds)
                                        .value("annotations", json::object())
                                        .value(kAnnotationServiceMonitor, "") == "true";
    if (had_service_monitor && !spec->service_monitor) {
      Status gone = client_->Delete(kinds::kServiceMonitor, ns, ServiceName(name));
      if (!gone.ok() && gone.code() != StatusCode::kNotFound) return gone;
    }
    Json ds = RenderDaemonSet(tw, *spec, options_);
    in.template_hash = ds["spec"]["template"]["metadata"]["annotations"][kAnnotationTemplateHash];
    TW_RETURN_IF_ERROR(ApplyIfChanged(kinds::kDaemonSet, caches_.daemon_sets, ds, force));
    if (spec->service_monitor) {
      Status sm =
          ApplyIfChanged(kinds::kServiceMonitor, nullptr, RenderServiceMonitor(tw, *spec), force);
      if (sm.code() == StatusCode::kNotFound) {
        TW_LOG(kWarn, "ServiceMonitor kind not served (is the Prometheus operator installed?)",
               {{"tokenwarehouse", key}});
      } else {
        TW_RETURN_IF_ERROR(sm);
      }
    }
  } else {
    TW_LOG(
        kInfo, "spec refused",
        {{"tokenwarehouse", key}, {"reason", in.invalid_reason}, {"message", in.invalid_message}});
  }
  ObjectPtr ds = caches_.daemon_sets->Get(ns, DaemonSetName(name));
  if (ds != nullptr) {
    in.daemon_set = *ds;
    if (in.template_hash.empty()) {
      in.template_hash = ds->value("spec", json::object())
                             .value("template", json::object())
                             .value("metadata", json::object())
                             .value("annotations", json::object())
                             .value(kAnnotationTemplateHash, "");
    }
  }
  in.pods = std::move(pods);
  TW_RETURN_IF_ERROR(WriteStatus(tw, ComputeStatus(tw, in)));
  return ReconcileResult{};
}

}  // namespace tw::op
