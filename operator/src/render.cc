#include "tw/operator/render.h"

#include <algorithm>
#include <cmath>

#include "tw/common/strings.h"
#include "tw/common/units.h"

namespace tw::op {
namespace {

using nlohmann::json;

std::string NameOf(const json& tw) { return tw["metadata"].value("name", ""); }
std::string NamespaceOf(const json& tw) { return tw["metadata"].value("namespace", ""); }

json Metadata(const json& tw, const std::string& name) {
  return {{"name", name},
          {"namespace", NamespaceOf(tw)},
          {"labels", ChildLabels(NameOf(tw))},
          {"ownerReferences", json::array({OwnerReference(tw)})}};
}

// A Kubernetes quantity in binary units ("80Gi", "512Mi"), exact.
std::string Quantity(uint64_t bytes) {
  static const char* kUnits[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi"};
  int u = 0;
  while (u < 5 && bytes != 0 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++u;
  }
  return StrCat(bytes, kUnits[u]);
}

json Resources(const TokenWarehouseSpec& spec) {
  MemoryNeeds needs = ComputeMemoryNeeds(spec);
  json requests = spec.resources.value("requests", json::object());
  json limits = spec.resources.value("limits", json::object());
  if (!requests.is_object()) requests = json::object();
  if (!limits.is_object()) limits = json::object();
  if (!limits.contains("memory")) limits["memory"] = Quantity(needs.total);
  if (!requests.contains("memory")) requests["memory"] = limits["memory"];
  if (!requests.contains("cpu")) requests["cpu"] = "1";
  if (needs.hugepages > 0) {
    if (!limits.contains("hugepages-2Mi")) limits["hugepages-2Mi"] = Quantity(needs.hugepages);
    requests["hugepages-2Mi"] = limits["hugepages-2Mi"];
  }
  if (!spec.rdma_resource.empty()) {
    limits[spec.rdma_resource] = spec.rdma_count;
    requests[spec.rdma_resource] = spec.rdma_count;
  }
  return {{"requests", requests}, {"limits", limits}};
}

json Probe(const char* path, uint32_t port, int period, int failures) {
  return {{"httpGet", {{"path", path}, {"port", port}}},
          {"periodSeconds", period},
          {"timeoutSeconds", 2},
          {"failureThreshold", failures}};
}

json FieldEnv(const char* name, const char* field) {
  return {{"name", name}, {"valueFrom", {{"fieldRef", {{"fieldPath", field}}}}}};
}

// tw-csi and the kubelet's node-driver-registrar, when spec.csi.enabled: the plugin socket in
// <kubelet>/plugins/<driver>/, the registration socket in <kubelet>/plugins_registry/, the
// pods' volume folders with Bidirectional propagation (so that tw-csi's bind mounts reach the
// kubelet and the pods), and every warehouse's socket folder under spec.socket.hostDirectory,
// read-only, at the same path as on the host.
void AddCsiContainers(const TokenWarehouseSpec& spec, const json& twd_image, json& pod_spec) {
  const std::string& kubelet = spec.csi_kubelet_directory;
  const std::string plugin_dir = StrCat(kubelet, "/plugins/", kCsiDriverName);
  json& volumes = pod_spec["volumes"];
  volumes.push_back({{"name", "csi-plugin"},
                     {"hostPath", {{"path", plugin_dir}, {"type", "DirectoryOrCreate"}}}});
  volumes.push_back(
      {{"name", "csi-registration"},
       {"hostPath", {{"path", StrCat(kubelet, "/plugins_registry")}, {"type", "Directory"}}}});
  volumes.push_back({{"name", "csi-kubelet-pods"},
                     {"hostPath", {{"path", StrCat(kubelet, "/pods")}, {"type", "Directory"}}}});
  volumes.push_back(
      {{"name", "csi-socket-root"},
       {"hostPath", {{"path", spec.socket_host_directory}, {"type", "DirectoryOrCreate"}}}});

  json plugin = {
      {"name", "tw-csi"},
      {"image", spec.csi_image.empty() ? twd_image : json(spec.csi_image)},
      {"imagePullPolicy", spec.image_pull_policy},
      {"command", json::array({"/usr/local/bin/tw-csi"})},
      {"args", json::array({StrCat("--endpoint=unix://", kCsiPluginDir, "/csi.sock"),
                            "--node-id=$(TW_NODE_NAME)",
                            StrCat("--socket-root=", spec.socket_host_directory),
                            StrCat("--log-level=", spec.log_level)})},
      {"env", json::array({FieldEnv("TW_NODE_NAME", "spec.nodeName")})},
      // mount(2) needs CAP_SYS_ADMIN, and Bidirectional propagation a privileged container
      // (the API server refuses it otherwise): privileged by necessity (docs/security.md).
      {"securityContext",
       {{"privileged", true},
        {"runAsUser", 0},
        {"runAsNonRoot", false},
        {"readOnlyRootFilesystem", true}}},
      {"resources",
       {{"requests", {{"cpu", "10m"}, {"memory", "32Mi"}}}, {"limits", {{"memory", "128Mi"}}}}},
      {"volumeMounts", json::array({{{"name", "csi-plugin"}, {"mountPath", kCsiPluginDir}},
                                    {{"name", "csi-kubelet-pods"},
                                     {"mountPath", StrCat(kubelet, "/pods")},
                                     {"mountPropagation", "Bidirectional"}},
                                    {{"name", "csi-socket-root"},
                                     {"mountPath", spec.socket_host_directory},
                                     {"readOnly", true}}})},
  };
  json registrar = {
      {"name", "csi-node-driver-registrar"},
      {"image", spec.csi_registrar_image},
      {"imagePullPolicy", spec.image_pull_policy},
      {"args", json::array({StrCat("--csi-address=", kCsiPluginDir, "/csi.sock"),
                            StrCat("--kubelet-registration-path=", plugin_dir, "/csi.sock")})},
      // Writes its socket into the root-owned registration folder; needs no capability.
      {"securityContext",
       {{"runAsUser", 0},
        {"runAsNonRoot", false},
        {"readOnlyRootFilesystem", true},
        {"allowPrivilegeEscalation", false},
        {"capabilities", {{"drop", json::array({"ALL"})}}}}},
      {"resources",
       {{"requests", {{"cpu", "10m"}, {"memory", "16Mi"}}}, {"limits", {{"memory", "64Mi"}}}}},
      {"volumeMounts",
       json::array({{{"name", "csi-plugin"}, {"mountPath", kCsiPluginDir}},
                    {{"name", "csi-registration"}, {"mountPath", "/registration"}}})},
  };
  pod_spec["containers"].push_back(plugin);
  pod_spec["containers"].push_back(registrar);
}

}  // namespace

std::string ConfigMapName(const std::string& n) { return n + "-twd-config"; }
std::string PeersConfigMapName(const std::string& n) { return n + "-twd-peers"; }
std::string DaemonSetName(const std::string& n) { return n + "-twd"; }
std::string ServiceName(const std::string& n) { return n + "-twd"; }

json SelectorLabels(const std::string& tw_name) {
  return {{kLabelName, "twd"}, {kLabelInstance, tw_name}, {kLabelOwner, tw_name}};
}

json ChildLabels(const std::string& tw_name) {
  json labels = SelectorLabels(tw_name);
  labels[kLabelManagedBy] = kManagedByValue;
  return labels;
}

json OwnerReference(const json& tw) {
  return {{"apiVersion", "tokenwarehouse.io/v1alpha1"},
          {"kind", "TokenWarehouse"},
          {"name", NameOf(tw)},
          {"uid", tw["metadata"].value("uid", "")},
          {"controller", true},
          {"blockOwnerDeletion", true}};
}

std::string SocketHostDirectory(const json& tw, const TokenWarehouseSpec& spec) {
  std::string base = spec.socket_host_directory == "/" ? "" : spec.socket_host_directory;
  return StrCat(base, "/", NamespaceOf(tw), "/", NameOf(tw));
}

std::string SocketHostPath(const json& tw, const TokenWarehouseSpec& spec) {
  return SocketHostDirectory(tw, spec) + "/twd.sock";
}

std::string StableHash(std::string_view data) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ull;
  }
  static const char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<size_t>(i)] = kHex[h & 15];
  return out;
}

std::string StampAppliedHash(json& object) {
  json& annotations = object["metadata"]["annotations"];
  if (annotations.is_object()) annotations.erase(kAnnotationAppliedHash);
  if (annotations.is_null() || annotations.empty()) object["metadata"].erase("annotations");
  std::string hash = StableHash(object.dump());
  object["metadata"]["annotations"][kAnnotationAppliedHash] = hash;
  return hash;
}

json RenderConfigMap(const json& tw, const TokenWarehouseSpec& spec) {
  json cm = {{"apiVersion", "v1"},
             {"kind", "ConfigMap"},
             {"metadata", Metadata(tw, ConfigMapName(NameOf(tw)))},
             {"data", {{kConfigFile, config::RenderYaml(TwdConfig(spec))}}}};
  StampAppliedHash(cm);
  return cm;
}

json RenderService(const json& tw, const TokenWarehouseSpec& spec) {
  json ports = json::array();
  ports.push_back({{"name", "metrics"},
                   {"port", spec.metrics_port},
                   {"targetPort", "metrics"},
                   {"protocol", "TCP"}});
  if (spec.federation_enabled) {
    ports.push_back({{"name", "mesh"},
                     {"port", spec.federation_port},
                     {"targetPort", "mesh"},
                     {"protocol", "TCP"}});
  }
  json svc = {{"apiVersion", "v1"},
              {"kind", "Service"},
              {"metadata", Metadata(tw, ServiceName(NameOf(tw)))},
              {"spec",
               {{"clusterIP", "None"},
                {"publishNotReadyAddresses", true},
                {"selector", SelectorLabels(NameOf(tw))},
                {"ports", ports}}}};
  StampAppliedHash(svc);
  return svc;
}

json RenderDaemonSet(const json& tw, const TokenWarehouseSpec& spec, const RenderOptions& options) {
  const std::string name = NameOf(tw);
  std::string config_yaml = config::RenderYaml(TwdConfig(spec));

  json volumes = json::array();
  json mounts = json::array();
  volumes.push_back({{"name", "config"}, {"configMap", {{"name", ConfigMapName(name)}}}});
  mounts.push_back({{"name", "config"}, {"mountPath", kConfigDir}, {"readOnly", true}});
  // The whole directory, never a subPath: subPath mounts do not see ConfigMap updates.
  volumes.push_back({{"name", "peers"}, {"configMap", {{"name", PeersConfigMapName(name)}}}});
  mounts.push_back({{"name", "peers"}, {"mountPath", kPeersDir}, {"readOnly", true}});
  if (spec.federation_enabled && !spec.federation_tls_secret.empty()) {
    // Group-readable by the pod's fsGroup (twd's gid, set below), unreadable by others.
    volumes.push_back(
        {{"name", "mesh-tls"},
         {"secret", {{"secretName", spec.federation_tls_secret}, {"defaultMode", 0440}}}});
    mounts.push_back({{"name", "mesh-tls"}, {"mountPath", kMeshTlsDir}, {"readOnly", true}});
  }
  volumes.push_back(
      {{"name", "socket"},
       {"hostPath", {{"path", SocketHostDirectory(tw, spec)}, {"type", "DirectoryOrCreate"}}}});
  mounts.push_back({{"name", "socket"}, {"mountPath", kSocketDir}});
  volumes.push_back({{"name", "admin-socket"}, {"emptyDir", json::object()}});
  mounts.push_back({{"name", "admin-socket"}, {"mountPath", kAdminSocketDir}});
  bool block_device = false;
  // Paths the kubelet creates owned by root that twd (the image's non-root user) must own.
  json chown_paths = json::array({kSocketDir});
  for (const auto& d : spec.nvme_devices) {
    std::string vol = "nvme-" + d.name;
    if (!d.claim_name.empty()) {
      volumes.push_back({{"name", vol}, {"persistentVolumeClaim", {{"claimName", d.claim_name}}}});
      mounts.push_back({{"name", vol}, {"mountPath", StrCat(kDataDir, "/", d.name)}});
      chown_paths.push_back(StrCat(kDataDir, "/", d.name));
    } else {
      volumes.push_back(
          {{"name", vol}, {"hostPath", {{"path", d.host_path}, {"type", d.host_path_type}}}});
      mounts.push_back({{"name", vol}, {"mountPath", DevicePathInPod(d)}});
      block_device |= d.host_path_type == "BlockDevice";
      if (d.host_path_type != "BlockDevice") chown_paths.push_back(DevicePathInPod(d));
      if (d.host_path_type != "BlockDevice" && &d == &spec.nvme_devices.front()) {
        // twd keeps declared namespaces' fields in a file beside the first data path
        // (NamespaceRegistryPath); the root filesystem is read-only, so it is a host file too.
        const std::string registry = DevicePathInPod(d) + ".namespaces";
        volumes.push_back(
            {{"name", vol + "-namespaces"},
             {"hostPath", {{"path", d.host_path + ".namespaces"}, {"type", "FileOrCreate"}}}});
        mounts.push_back({{"name", vol + "-namespaces"}, {"mountPath", registry}});
        chown_paths.push_back(registry);
      }
    }
  }

  json env = json::array();
  env.push_back(FieldEnv("TW_NODE_NAME", "spec.nodeName"));
  env.push_back(FieldEnv("TW_POD_NAME", "metadata.name"));
  env.push_back(FieldEnv("TW_POD_IP", "status.podIP"));
  if (spec.gpu_visible) {
    // Visibility without a claim: the device plugin never hands these GPUs to twd.
    env.push_back({{"name", "NVIDIA_VISIBLE_DEVICES"}, {"value", spec.gpu_devices}});
    env.push_back({{"name", "NVIDIA_DRIVER_CAPABILITIES"}, {"value", "compute,utility"}});
  }

  json ports = json::array();
  ports.push_back({{"name", "metrics"}, {"containerPort", spec.metrics_port}, {"protocol", "TCP"}});
  if (spec.federation_enabled) {
    ports.push_back(
        {{"name", "mesh"}, {"containerPort", spec.federation_port}, {"protocol", "TCP"}});
  }

  // Non-root, nothing writable but the mounted volumes, every capability dropped but
  // IPC_LOCK (pinning the DRAM arena); seccomp below (docs/security.md).
  json security = {
      {"runAsNonRoot", true},
      {"runAsUser", kTwdUid},
      {"runAsGroup", kTwdUid},
      {"readOnlyRootFilesystem", true},
      {"allowPrivilegeEscalation", false},
      {"capabilities", {{"drop", json::array({"ALL"})}, {"add", json::array({"IPC_LOCK"})}}}};
  if (block_device) {
    // Raw block devices need device access; Kubernetes refuses a privileged container that
    // also forbids privilege escalation.
    security["privileged"] = true;
    security.erase("allowPrivilegeEscalation");
  }

  json container = {
      {"name", "twd"},
      {"image", spec.image.empty() ? options.default_image : spec.image},
      {"imagePullPolicy", spec.image_pull_policy},
      {"args", json::array({"--config", StrCat(kConfigDir, "/", kConfigFile)})},
      {"env", env},
      {"ports", ports},
      {"resources", Resources(spec)},
      {"securityContext", security},
      {"volumeMounts", mounts},
      {"livenessProbe", Probe("/healthz", spec.metrics_port, 10, 3)},
      {"readinessProbe", Probe("/readyz", spec.metrics_port, 5, 2)},
      {"startupProbe", Probe("/healthz", spec.metrics_port, 5, 60)},
  };
  if (spec.dram_hugepages) {
    volumes.push_back({{"name", "hugepages"}, {"emptyDir", {{"medium", "HugePages-2Mi"}}}});
    container["volumeMounts"].push_back({{"name", "hugepages"}, {"mountPath", "/dev/hugepages"}});
  }

  // The socket directory and FileOrCreate data files appear owned by root; twd runs as the
  // image's non-root user. A short init container (root, CAP_CHOWN only) hands them over, so
  // nothing has to be prepared on the nodes by hand.
  json command = json::array({"chown", StrCat(kTwdUid, ":", kTwdUid)});
  for (const auto& p : chown_paths) command.push_back(p);
  json init = {
      {"name", "prepare-paths"},
      {"image", container["image"]},
      {"imagePullPolicy", spec.image_pull_policy},
      {"command", command},
      {"securityContext",
       {{"runAsUser", 0},
        {"runAsNonRoot", false},
        {"readOnlyRootFilesystem", true},
        {"allowPrivilegeEscalation", false},
        {"capabilities", {{"drop", json::array({"ALL"})}, {"add", json::array({"CHOWN"})}}}}},
      {"volumeMounts", mounts},
  };

  double grace_s = std::chrono::duration<double>(spec.shutdown_grace).count();
  json seccomp = {{"type", spec.seccomp_type}};
  if (spec.seccomp_type == "Localhost") {
    seccomp["localhostProfile"] = spec.seccomp_localhost_profile;
  }
  container["securityContext"]["seccompProfile"] = seccomp;
  init["securityContext"]["seccompProfile"] = seccomp;
  json pod_spec = {
      {"initContainers", json::array({init})},
      {"containers", json::array({container})},
      {"volumes", volumes},
      {"terminationGracePeriodSeconds", static_cast<int64_t>(std::ceil(grace_s)) + 10},
  };
  if (spec.csi_enabled) AddCsiContainers(spec, container["image"], pod_spec);
  if (!spec.node_selector.empty()) pod_spec["nodeSelector"] = spec.node_selector;
  if (!spec.affinity.is_null()) pod_spec["affinity"] = spec.affinity;
  if (!spec.tolerations.is_null()) pod_spec["tolerations"] = spec.tolerations;
  if (!spec.priority_class_name.empty()) pod_spec["priorityClassName"] = spec.priority_class_name;
  if (!spec.runtime_class_name.empty()) pod_spec["runtimeClassName"] = spec.runtime_class_name;
  if (!spec.image_pull_secrets.empty()) {
    json secrets = json::array();
    for (const auto& s : spec.image_pull_secrets) secrets.push_back({{"name", s}});
    pod_spec["imagePullSecrets"] = secrets;
  }
  // RuntimeDefault for the pod (the CSI registrar, a foreign binary, keeps it); twd and its
  // init container get spec.seccompProfile, which may be the tighter Localhost profile.
  pod_spec["securityContext"] = {{"seccompProfile", {{"type", "RuntimeDefault"}}}};
  if (spec.federation_enabled && !spec.federation_tls_secret.empty()) {
    pod_spec["securityContext"]["fsGroup"] = kTwdUid;
  }
  if (spec.host_network) {
    pod_spec["hostNetwork"] = true;
    pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet";
  }

  json template_meta = {{"labels", ChildLabels(name)},
                        {"annotations", {{kAnnotationConfigHash, StableHash(config_yaml)}}}};
  json pod_template = {{"metadata", template_meta}, {"spec", pod_spec}};
  // The template hash tells which pods run the current template (status counts only those).
  pod_template["metadata"]["annotations"][kAnnotationTemplateHash] =
      StableHash(pod_template.dump());

  json ds = {{"apiVersion", "apps/v1"},
             {"kind", "DaemonSet"},
             {"metadata", Metadata(tw, DaemonSetName(name))},
             {"spec",
              {{"selector", {{"matchLabels", SelectorLabels(name)}}},
               {"updateStrategy",
                {{"type", "RollingUpdate"},
                 {"rollingUpdate", {{"maxUnavailable", spec.max_unavailable}}}}},
               {"template", pod_template}}}};
  if (spec.service_monitor) ds["metadata"]["annotations"][kAnnotationServiceMonitor] = "true";
  StampAppliedHash(ds);
  return ds;
}

json RenderServiceMonitor(const json& tw, const TokenWarehouseSpec& spec) {
  json meta = Metadata(tw, ServiceName(NameOf(tw)));
  for (const auto& [k, v] : spec.service_monitor_labels.items()) meta["labels"][k] = v;
  json sm = {{"apiVersion", "monitoring.coreos.com/v1"},
             {"kind", "ServiceMonitor"},
             {"metadata", meta},
             {"spec",
              {{"selector", {{"matchLabels", SelectorLabels(NameOf(tw))}}},
               {"endpoints", json::array({{{"port", "metrics"},
                                           {"path", "/metrics"},
                                           {"interval", spec.service_monitor_interval}}})}}}};
  StampAppliedHash(sm);
  return sm;
}

std::string RenderPeersJson(std::vector<Peer> peers) {
  std::sort(peers.begin(), peers.end(), [](const Peer& a, const Peer& b) {
    return std::tie(a.node, a.address) < std::tie(b.node, b.address);
  });
  json list = json::array();
  for (const auto& p : peers) {
    list.push_back({{"node", p.node}, {"address", p.address}, {"port", p.port}});
  }
  return json{{"peers", list}}.dump() + "\n";
}

json RenderPeersConfigMap(const json& tw, const std::vector<Peer>& peers) {
  json cm = {{"apiVersion", "v1"},
             {"kind", "ConfigMap"},
             {"metadata", Metadata(tw, PeersConfigMapName(NameOf(tw)))},
             {"data", {{kPeersFile, RenderPeersJson(peers)}}}};
  StampAppliedHash(cm);
  return cm;
}

}  // namespace tw::op
