#include "tw/operator/pod_injector.h"

#include <algorithm>
#include <charconv>
#include <set>

#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/operator/kube_config.h"
#include "tw/operator/render.h"

namespace tw::op {
namespace {

using json = nlohmann::json;

// RFC 6901: "~" is "~0", "/" is "~1".
std::string PointerToken(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

json Add(std::string path, json value) {
  return {{"op", "add"}, {"path", std::move(path)}, {"value", std::move(value)}};
}

// `obj[key]` when it is an array, an empty array when absent or null, an error otherwise.
StatusOr<json> ArrayField(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return json::array();
  if (!it->is_array()) return InvalidArgumentError(StrCat(where, ".", key, ": not an array"));
  return *it;
}

std::string StripSlashes(std::string s) {
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

std::string StringAt(const json& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

const json& ObjectAt(const json& obj, const char* key) {
  static const json kEmpty = json::object();
  if (!obj.is_object()) return kEmpty;
  auto it = obj.find(key);
  return it != obj.end() && it->is_object() ? *it : kEmpty;
}

}  // namespace

StatusOr<json> PlanPodPatch(const json& pod, const InjectTarget& target) {
  if (!pod.is_object()) return InvalidArgumentError("pod: not an object");
  auto spec_it = pod.find("spec");
  if (spec_it == pod.end() || !spec_it->is_object()) {
    return InvalidArgumentError("pod: spec is missing or not an object");
  }
  const json& spec = *spec_it;
  auto containers_it = spec.find("containers");
  if (containers_it == spec.end() || !containers_it->is_array()) {
    return InvalidArgumentError("pod: spec.containers is missing or not an array");
  }
  json patch = json::array();

  // The annotation that says which warehouse the pod was wired to.
  auto meta_it = pod.find("metadata");
  if (meta_it == pod.end() || meta_it->is_null()) {
    patch.push_back(Add("/metadata", {{"annotations", {{kInjectedAnnotation, target.warehouse}}}}));
  } else if (!meta_it->is_object()) {
    return InvalidArgumentError("pod: metadata is not an object");
  } else {
    auto ann = meta_it->find("annotations");
    if (ann == meta_it->end() || ann->is_null()) {
      patch.push_back(Add("/metadata/annotations", {{kInjectedAnnotation, target.warehouse}}));
    } else if (!ann->is_object()) {
      return InvalidArgumentError("pod: metadata.annotations is not an object");
    } else if (StringAt(*ann, kInjectedAnnotation) != target.warehouse) {
      patch.push_back(Add(StrCat("/metadata/annotations/", PointerToken(kInjectedAnnotation)),
                          target.warehouse));
    }
  }

  // The volume: an existing CSI volume of the driver is kept, else one is added under a name
  // no other volume has.
  TW_ASSIGN_OR_RETURN(json volumes, ArrayField(spec, "volumes", "pod.spec"));
  std::string volume;
  std::set<std::string> names;
  for (const auto& v : volumes) {
    if (!v.is_object()) return InvalidArgumentError("pod.spec.volumes: an entry is not an object");
    names.insert(StringAt(v, "name"));
    if (volume.empty() && StringAt(ObjectAt(v, "csi"), "driver") == kCsiDriverName) {
      volume = StringAt(v, "name");
    }
  }
  if (volume.empty()) {
    volume = kInjectVolumeName;
    for (int i = 2; names.count(volume) != 0; ++i) volume = StrCat(kInjectVolumeName, "-", i);
    json v = {{"name", volume},
              {"csi",
               {{"driver", kCsiDriverName},
                {"readOnly", true},
                {"volumeAttributes", {{"warehouse", target.warehouse}}}}}};
    patch.push_back(spec.contains("volumes") && !spec["volumes"].is_null()
                        ? Add("/spec/volumes/-", v)
                        : Add("/spec/volumes", json::array({v})));
  }

  // Every container and init container: the mount and TW_SOCKET, each unless already there.
  const std::string socket = StrCat(kSocketDir, "/twd.sock");
  for (const char* list : {"initContainers", "containers"}) {
    TW_ASSIGN_OR_RETURN(json cs, ArrayField(spec, list, "pod.spec"));
    for (size_t i = 0; i < cs.size(); ++i) {
      const json& c = cs[i];
      std::string where = StrCat("pod.spec.", list, "[", i, "]");
      if (!c.is_object()) return InvalidArgumentError(StrCat(where, ": not an object"));
      std::string base = StrCat("/spec/", list, "/", i);
      TW_ASSIGN_OR_RETURN(json mounts, ArrayField(c, "volumeMounts", where));
      bool mounted = std::any_of(mounts.begin(), mounts.end(), [](const json& m) {
        return StripSlashes(StringAt(m, "mountPath")) == kSocketDir;
      });
      if (!mounted) {
        json m = {{"name", volume}, {"mountPath", kSocketDir}, {"readOnly", true}};
        patch.push_back(mounts.empty() &&
                                !(c.contains("volumeMounts") && c["volumeMounts"].is_array())
                            ? Add(base + "/volumeMounts", json::array({m}))
                            : Add(base + "/volumeMounts/-", m));
      }
      TW_ASSIGN_OR_RETURN(json env, ArrayField(c, "env", where));
      bool has_env = std::any_of(env.begin(), env.end(),
                                 [](const json& e) { return StringAt(e, "name") == kSocketEnv; });
      if (!has_env) {
        json e = {{"name", kSocketEnv}, {"value", socket}};
        patch.push_back(c.contains("env") && c["env"].is_array()
                            ? Add(base + "/env/-", e)
                            : Add(base + "/env", json::array({e})));
      }
    }
  }

  // The socket's group.
  if (target.supplemental_group) {
    const int64_t gid = *target.supplemental_group;
    auto sc = spec.find("securityContext");
    if (sc == spec.end() || sc->is_null()) {
      patch.push_back(Add("/spec/securityContext", {{"supplementalGroups", json::array({gid})}}));
    } else if (!sc->is_object()) {
      return InvalidArgumentError("pod.spec.securityContext: not an object");
    } else {
      TW_ASSIGN_OR_RETURN(json groups,
                          ArrayField(*sc, "supplementalGroups", "pod.spec.securityContext"));
      bool present = std::any_of(groups.begin(), groups.end(), [gid](const json& g) {
        return g.is_number_integer() && g.get<int64_t>() == gid;
      });
      if (!present) {
        patch.push_back(sc->contains("supplementalGroups") && (*sc)["supplementalGroups"].is_array()
                            ? Add("/spec/securityContext/supplementalGroups/-", gid)
                            : Add("/spec/securityContext/supplementalGroups", json::array({gid})));
      }
    }
  }
  return patch;
}

StatusOr<std::optional<int64_t>> SocketGroupId(const TokenWarehouseSpec& spec) {
  if ((spec.socket_mode & 0006) == 0006) return std::optional<int64_t>();
  const std::string& g = spec.socket_group;
  if (g.empty() || g == "tokenwarehouse") return std::optional<int64_t>(kTwdUid);
  if (g == "disk") return std::optional<int64_t>(kDiskGid);
  int64_t gid = 0;
  auto [p, ec] = std::from_chars(g.data(), g.data() + g.size(), gid);
  if (ec == std::errc() && p == g.data() + g.size() && gid >= 0) {
    return std::optional<int64_t>(gid);
  }
  return NotFoundError(StrCat("spec.socket.group \"", g,
                              "\" is a group name whose gid only twd's image knows; add its gid "
                              "to the pod's supplementalGroups yourself"));
}

StatusOr<InjectTarget> PodInjector::Resolve(const std::string& ns,
                                            const std::string& warehouse) const {
  if (warehouse.empty()) return InvalidArgumentError(StrCat("label ", kInjectLabel, " is empty"));
  const std::string key = StrCat(ns, "/", warehouse);
  auto tw = source_->Get(ns, warehouse);
  if (tw == nullptr) {
    if (!source_->Synced()) {
      return UnavailableError(
          StrCat("tw-operator has not yet listed the TokenWarehouses; ", key, " unknown"));
    }
    return NotFoundError(StrCat("no TokenWarehouse ", key,
                                " (in the namespaces tw-operator "
                                "watches)"));
  }
  auto spec = ParseSpec(tw->value("spec", json::object()));
  if (!spec.ok()) {
    return FailedPreconditionError(
        StrCat("TokenWarehouse ", key, " has an invalid spec: ", spec.status().message()));
  }
  bool served = spec->csi_enabled;
  for (const auto& other : served ? std::vector<std::shared_ptr<const json>>() : source_->List()) {
    auto o = ParseSpec(other->value("spec", json::object()));
    if (o.ok() && o->csi_enabled && o->socket_host_directory == spec->socket_host_directory) {
      served = true;
      break;
    }
  }
  if (!served) {
    return FailedPreconditionError(StrCat(
        "TokenWarehouse ", key, " has no CSI driver: neither it nor another TokenWarehouse ",
        "with socket.hostDirectory ", spec->socket_host_directory, " sets spec.csi.enabled"));
  }
  InjectTarget target;
  target.warehouse = key;
  auto gid = SocketGroupId(*spec);
  if (gid.ok()) {
    target.supplemental_group = *gid;
  } else {
    target.warning = std::string(gid.status().message());
  }
  return target;
}

ReviewResult PodInjector::Review(std::string_view body) const {
  ReviewResult out;
  json review;
  try {
    review = json::parse(body);
  } catch (const std::exception& e) {
    out.http_status = 400;
    out.body = StrCat("malformed AdmissionReview: not JSON: ", e.what(), "\n");
    return out;
  }
  auto bad = [&out](std::string_view why) {
    out.http_status = 400;
    out.body = StrCat("malformed AdmissionReview: ", why, "\n");
    return out;
  };
  if (!review.is_object()) return bad("not a JSON object");
  if (StringAt(review, "apiVersion") != "admission.k8s.io/v1" ||
      StringAt(review, "kind") != "AdmissionReview") {
    return bad("want apiVersion admission.k8s.io/v1, kind AdmissionReview");
  }
  const json& request = ObjectAt(review, "request");
  const std::string uid = StringAt(request, "uid");
  if (uid.empty()) return bad("request.uid is missing");

  json response = {{"uid", uid}, {"allowed", true}};
  const json& pod = ObjectAt(request, "object");
  const bool is_pod_create = StringAt(ObjectAt(request, "kind"), "kind") == "Pod" &&
                             StringAt(ObjectAt(request, "kind"), "group").empty() &&
                             StringAt(request, "subResource").empty() &&
                             StringAt(request, "operation") == "CREATE";
  const json& labels = ObjectAt(ObjectAt(pod, "metadata"), "labels");
  auto label = labels.find(kInjectLabel);
  if (is_pod_create && label != labels.end()) {
    std::string ns = StringAt(request, "namespace");
    if (ns.empty()) ns = StringAt(ObjectAt(pod, "metadata"), "namespace");
    std::string name = StringAt(request, "name");
    if (name.empty()) name = StringAt(ObjectAt(pod, "metadata"), "name");
    if (name.empty()) name = StringAt(ObjectAt(pod, "metadata"), "generateName") + "*";
    const std::string warehouse = label->is_string() ? label->get<std::string>() : "";
    std::string wh_ns =
        StringAt(ObjectAt(ObjectAt(pod, "metadata"), "annotations"), kInjectNamespaceAnnotation);
    if (wh_ns.empty()) wh_ns = ns;
    auto target = Resolve(wh_ns, warehouse);
    StatusOr<json> patch = target.ok() ? PlanPodPatch(pod, *target) : target.status();
    if (!patch.ok()) {
      out.warnings.push_back(
          StrCat("tokenwarehouse: pod not wired to the warehouse (it runs "
                 "without its cache): ",
                 patch.status().message()));
      TW_LOG(kWarn, "webhook: pod not injected",
             {{"pod", StrCat(ns, "/", name)}, {"error", patch.status()}});
    } else {
      if (!target->warning.empty()) {
        out.warnings.push_back(StrCat("tokenwarehouse: ", target->warning));
      }
      if (!patch->empty()) {
        out.patched = true;
        response["patchType"] = "JSONPatch";
        response["patch"] = Base64Encode(patch->dump());
      }
      TW_LOG(kInfo, "webhook: pod injected",
             {{"pod", StrCat(ns, "/", name)},
              {"warehouse", target->warehouse},
              {"changes", patch->size()}});
      if (!target->warning.empty()) {
        TW_LOG(kWarn, "webhook: pod injected without a group",
               {{"pod", StrCat(ns, "/", name)}, {"reason", target->warning}});
      }
    }
  }
  if (!out.warnings.empty()) response["warnings"] = out.warnings;
  out.body = json{
      {"apiVersion", "admission.k8s.io/v1"},
      {"kind", "AdmissionReview"},
      {"response",
       response}}.dump();
  return out;
}

}  // namespace tw::op
