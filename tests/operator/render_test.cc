// Rendering: golden files pin the exact children (tests/operator/golden/; regenerate with
// TW_UPDATE_GOLDEN=1 and review the diff), and every rendered twd config is re-parsed by
// tw_config.
#include "tw/operator/render.h"

#include <fstream>
#include <map>
#include <sstream>

#include "gtest/gtest.h"
#include "tw/common/config.h"

namespace tw::op {
namespace {

using nlohmann::json;

json Owner(const json& spec) {
  return {{"apiVersion", "tokenwarehouse.io/v1alpha1"},
          {"kind", "TokenWarehouse"},
          {"metadata",
           {{"name", "pool"},
            {"namespace", "inference"},
            {"uid", "6f1c0b6e-4d3a-4a8e-9d0f-1c2b3a4d5e6f"},
            {"generation", 3},
            {"creationTimestamp", "2026-01-01T00:00:00Z"}}},
          {"spec", spec}};
}

json GoldenSpec() {
  return json::parse(R"({
    "image": "registry.example/twd:1.2.3",
    "imagePullSecrets": [{"name": "regcred"}],
    "nodeSelector": {"nvidia.com/gpu.present": "true"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "priorityClassName": "system-node-critical",
    "shutdownGrace": "30s",
    "tiers": {
      "dram": {"capacity": "64Gi", "pinned": true},
      "nvme": {"devices": [
        {"name": "nvme0", "hostPath": "/mnt/nvme0/tw.data", "capacity": "2Ti"},
        {"name": "nvme1", "hostPath": "/mnt/nvme1/tw.data", "capacity": "2Ti"}
      ]},
      "gpu": {"visible": true, "runtimeClassName": "nvidia"}
    },
    "defaultDurability": "disk",
    "federation": {"enabled": true, "transport": "rdma", "rdmaResource": {"name": "rdma/hca", "count": 1}},
    "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}}},
    "updateStrategy": {"maxUnavailable": "10%"}
  })");
}

std::string GoldenPath(const std::string& name) {
  return std::string(TW_SOURCE_DIR) + "/tests/operator/golden/" + name;
}

void ExpectGolden(const std::string& name, const json& actual) {
  std::string text = actual.dump(2) + "\n";
  if (std::getenv("TW_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(GoldenPath(name)) << text;
  }
  std::ifstream in(GoldenPath(name));
  ASSERT_TRUE(in) << "missing golden file " << GoldenPath(name)
                  << " (run with TW_UPDATE_GOLDEN=1 to create it)";
  std::stringstream golden;
  golden << in.rdbuf();
  EXPECT_EQ(golden.str(), text) << "rendering of " << name
                                << " changed; if intended, rerun with TW_UPDATE_GOLDEN=1";
}

class RenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto parsed = ParseSpec(GoldenSpec());
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    spec_ = *parsed;
    tw_ = Owner(GoldenSpec());
  }
  TokenWarehouseSpec spec_;
  json tw_;
};

TEST_F(RenderTest, DaemonSetGolden) {
  ExpectGolden("daemonset.json", RenderDaemonSet(tw_, spec_, RenderOptions{}));
}

TEST_F(RenderTest, ConfigMapGolden) { ExpectGolden("configmap.json", RenderConfigMap(tw_, spec_)); }

TEST_F(RenderTest, ServiceGolden) { ExpectGolden("service.json", RenderService(tw_, spec_)); }

TEST_F(RenderTest, PeersConfigMapGolden) {
  std::vector<Peer> peers = {{"node-b", "10.0.0.2", 7470}, {"node-a", "10.0.0.1", 7470}};
  ExpectGolden("peers-configmap.json", RenderPeersConfigMap(tw_, peers));
}

TEST_F(RenderTest, ServiceMonitorGolden) {
  ExpectGolden("servicemonitor.json", RenderServiceMonitor(tw_, spec_));
}

TEST_F(RenderTest, RenderedConfigParsesBackEqual) {
  json cm = RenderConfigMap(tw_, spec_);
  auto parsed = config::ParseYaml(cm["data"]["twd.yaml"].get<std::string>());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, TwdConfig(spec_));
  EXPECT_EQ(parsed->dram.capacity, uint64_t{64} << 30);
  EXPECT_EQ(parsed->nvme.paths.size(), 2u);
  EXPECT_EQ(parsed->default_durability, config::Durability::kDisk);
  EXPECT_EQ(parsed->shutdown_grace, std::chrono::seconds(30));
  EXPECT_EQ(parsed->mesh.transport, config::Transport::kRdma);
}

TEST_F(RenderTest, DaemonSetCarriesWhatTwdNeeds) {
  json ds = RenderDaemonSet(tw_, spec_, RenderOptions{});
  const json& pod = ds["spec"]["template"]["spec"];
  const json& c = pod["containers"][0];
  EXPECT_EQ(c["image"], "registry.example/twd:1.2.3");
  EXPECT_EQ(c["securityContext"]["capabilities"]["add"][0], "IPC_LOCK");
  EXPECT_EQ(pod["terminationGracePeriodSeconds"], 40);  // above the 30 s shutdown grace
  EXPECT_EQ(c["resources"]["limits"]["rdma/hca"], 1);
  EXPECT_FALSE(c["resources"]["limits"].contains("nvidia.com/gpu")) << "never claims GPUs";
  EXPECT_EQ(pod["runtimeClassName"], "nvidia");
  EXPECT_EQ(c["livenessProbe"]["httpGet"]["path"], "/healthz");
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"], "/readyz");
  EXPECT_EQ(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"], "10%");
  // Memory limit = the computed need.
  MemoryNeeds needs = ComputeMemoryNeeds(spec_);
  auto limit = ParseQuantityBytes(c["resources"]["limits"]["memory"], "limit");
  ASSERT_TRUE(limit.ok());
  EXPECT_EQ(*limit, needs.total);
  // The socket directory is per TokenWarehouse; peers are a whole-directory mount.
  bool socket = false, peers = false;
  for (const auto& v : pod["volumes"]) {
    if (v["name"] == "socket") {
      socket = v["hostPath"]["path"] == "/run/tokenwarehouse/inference/pool";
    }
  }
  for (const auto& m : c["volumeMounts"]) {
    if (m["name"] == "peers") peers = m["mountPath"] == kPeersDir && !m.contains("subPath");
  }
  EXPECT_TRUE(socket);
  EXPECT_TRUE(peers);
  // Owner reference: controller, blocking deletion.
  const json& ref = ds["metadata"]["ownerReferences"][0];
  EXPECT_EQ(ref["uid"], tw_["metadata"]["uid"]);
  EXPECT_EQ(ref["controller"], true);
  EXPECT_EQ(ref["blockOwnerDeletion"], true);
}

// spec.csi.enabled adds tw-csi and the node-driver-registrar to the twd pod, wired to the
// kubelet's plugin folders; without it the pod has twd alone.
// spec.federation.tls: the Secret mounted read-only where the rendered config points, readable
// by twd's group only; cacheRemoteHits reaches the config. Without it: no volume, no fsGroup.
// docs/security.md: twd non-root on a read-only root filesystem with every capability dropped
// but IPC_LOCK and no escalation; the pod RuntimeDefault; twd and its init container on
// spec.seccompProfile (Localhost when asked); a privileged twd only for raw block devices.
TEST_F(RenderTest, PodsAreHardened) {
  json ds = RenderDaemonSet(tw_, spec_, RenderOptions{});
  const json& pod = ds["spec"]["template"]["spec"];
  EXPECT_EQ(pod["securityContext"]["seccompProfile"], json({{"type", "RuntimeDefault"}}));
  const json& twd = pod["containers"][0]["securityContext"];
  EXPECT_EQ(twd["runAsNonRoot"], true);
  EXPECT_EQ(twd["runAsUser"], kTwdUid);
  EXPECT_EQ(twd["readOnlyRootFilesystem"], true);
  EXPECT_EQ(twd["allowPrivilegeEscalation"], false);
  EXPECT_EQ(twd["capabilities"], json::parse(R"({"drop":["ALL"],"add":["IPC_LOCK"]})"));
  EXPECT_EQ(twd["seccompProfile"], json({{"type", "RuntimeDefault"}}));
  EXPECT_FALSE(twd.contains("privileged"));
  const json& init = pod["initContainers"][0]["securityContext"];
  EXPECT_EQ(init["readOnlyRootFilesystem"], true);
  EXPECT_EQ(init["capabilities"], json::parse(R"({"drop":["ALL"],"add":["CHOWN"]})"));
  // The namespace registry beside the first hostPath data file is a host file too.
  bool registry = false;
  for (const json& m : pod["containers"][0]["volumeMounts"]) {
    registry |= m["mountPath"] == DevicePathInPod(spec_.nvme_devices[0]) + ".namespaces";
  }
  EXPECT_TRUE(registry);

  json spec = GoldenSpec();
  spec["seccompProfile"] = {{"type", "Localhost"}, {"localhostProfile", "tokenwarehouse/twd.json"}};
  spec["tiers"]["nvme"]["devices"][0]["hostPathType"] = "BlockDevice";
  auto parsed = ParseSpec(spec);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ds = RenderDaemonSet(Owner(spec), *parsed, RenderOptions{});
  const json& p2 = ds["spec"]["template"]["spec"];
  const json local = {{"type", "Localhost"}, {"localhostProfile", "tokenwarehouse/twd.json"}};
  EXPECT_EQ(p2["containers"][0]["securityContext"]["seccompProfile"], local);
  EXPECT_EQ(p2["initContainers"][0]["securityContext"]["seccompProfile"], local);
  EXPECT_EQ(p2["securityContext"]["seccompProfile"], json({{"type", "RuntimeDefault"}}));
  EXPECT_EQ(p2["containers"][0]["securityContext"]["privileged"], true);
  EXPECT_FALSE(p2["containers"][0]["securityContext"].contains("allowPrivilegeEscalation"));

  spec["seccompProfile"] = {{"type", "Localhost"}};
  EXPECT_FALSE(ParseSpec(spec).ok());  // Localhost needs its path
  spec["seccompProfile"] = {{"type", "Unconfined"}};
  EXPECT_FALSE(ParseSpec(spec).ok());
}

TEST_F(RenderTest, MeshTlsSecretMountedWhereTheConfigPoints) {
  json off = RenderDaemonSet(tw_, spec_, RenderOptions{});
  EXPECT_FALSE(off["spec"]["template"]["spec"]["securityContext"].contains("fsGroup"));
  EXPECT_EQ(off.dump().find("mesh-tls"), std::string::npos);

  json with_tls = GoldenSpec();
  with_tls["federation"]["tls"] = {{"secretName", "pool-mesh-tls"}, {"serverName", "twd.mesh"}};
  with_tls["federation"]["cacheRemoteHits"] = false;
  auto spec = ParseSpec(with_tls);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  json pod = RenderDaemonSet(Owner(with_tls), *spec, RenderOptions{})["spec"]["template"]["spec"];
  EXPECT_EQ(pod["securityContext"]["fsGroup"], kTwdUid);
  json volume;
  for (const json& v : pod["volumes"]) {
    if (v["name"] == "mesh-tls") volume = v;
  }
  ASSERT_FALSE(volume.is_null());
  EXPECT_EQ(volume["secret"]["secretName"], "pool-mesh-tls");
  EXPECT_EQ(volume["secret"]["defaultMode"], 0440);
  bool mounted = false;
  for (const json& m : pod["containers"][0]["volumeMounts"]) {
    if (m["name"] == "mesh-tls") {
      mounted = m["mountPath"] == kMeshTlsDir && m["readOnly"] == true;
    }
  }
  EXPECT_TRUE(mounted);

  auto config = config::ParseYaml(config::RenderYaml(TwdConfig(*spec)));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->mesh.tls.ca, std::string(kMeshTlsDir) + "/ca.crt");
  EXPECT_EQ(config->mesh.tls.cert, std::string(kMeshTlsDir) + "/tls.crt");
  EXPECT_EQ(config->mesh.tls.key, std::string(kMeshTlsDir) + "/tls.key");
  EXPECT_EQ(config->mesh.tls.server_name, "twd.mesh");
  EXPECT_FALSE(config->mesh.cache_remote_hits);

  with_tls["federation"]["tls"] = {{"secretName", ""}};
  EXPECT_FALSE(ParseSpec(with_tls).ok());
}

TEST_F(RenderTest, CsiContainersOnlyWhenAskedFor) {
  json off = RenderDaemonSet(tw_, spec_, RenderOptions{});
  ASSERT_EQ(off["spec"]["template"]["spec"]["containers"].size(), 1u);

  json with_csi = GoldenSpec();
  with_csi["csi"] = {{"enabled", true}, {"kubeletDirectory", "/var/lib/k0s/kubelet/"}};
  with_csi["socket"] = {{"hostDirectory", "/run/tw"}};
  auto spec = ParseSpec(with_csi);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  json ds = RenderDaemonSet(Owner(with_csi), *spec, RenderOptions{});
  const json& pod = ds["spec"]["template"]["spec"];
  ASSERT_EQ(pod["containers"].size(), 3u);
  const json& plugin = pod["containers"][1];
  const json& registrar = pod["containers"][2];
  EXPECT_EQ(plugin["name"], "tw-csi");
  EXPECT_EQ(plugin["image"], "registry.example/twd:1.2.3") << "tw-csi ships in the twd image";
  EXPECT_EQ(plugin["args"],
            json::array({"--endpoint=unix:///csi/csi.sock", "--node-id=$(TW_NODE_NAME)",
                         "--socket-root=/run/tw", "--log-level=info"}));
  EXPECT_EQ(plugin["securityContext"]["privileged"], true);
  EXPECT_EQ(registrar["image"], kDefaultRegistrarImage);
  EXPECT_EQ(registrar["args"],
            json::array({"--csi-address=/csi/csi.sock",
                         "--kubelet-registration-path=/var/lib/k0s/kubelet/plugins/"
                         "csi.tokenwarehouse.io/csi.sock"}));
  std::map<std::string, std::string> host_paths;
  for (const auto& v : pod["volumes"]) {
    if (v.contains("hostPath")) host_paths[v["name"]] = v["hostPath"]["path"];
  }
  EXPECT_EQ(host_paths["csi-plugin"], "/var/lib/k0s/kubelet/plugins/csi.tokenwarehouse.io");
  EXPECT_EQ(host_paths["csi-registration"], "/var/lib/k0s/kubelet/plugins_registry");
  EXPECT_EQ(host_paths["csi-kubelet-pods"], "/var/lib/k0s/kubelet/pods");
  EXPECT_EQ(host_paths["csi-socket-root"], "/run/tw");
  EXPECT_EQ(host_paths["socket"], "/run/tw/inference/pool") << "twd's folder is under the root";
  bool bidirectional = false, root_read_only = false;
  for (const auto& m : plugin["volumeMounts"]) {
    if (m["name"] == "csi-kubelet-pods") {
      bidirectional = m["mountPath"] == "/var/lib/k0s/kubelet/pods" &&
                      m.value("mountPropagation", "") == "Bidirectional";
    }
    if (m["name"] == "csi-socket-root") {
      root_read_only = m["mountPath"] == "/run/tw" && m.value("readOnly", false);
    }
  }
  EXPECT_TRUE(bidirectional);
  EXPECT_TRUE(root_read_only);

  with_csi["csi"]["image"] = "registry.example/tw-csi:2";
  with_csi["csi"]["registrarImage"] = "mirror.example/registrar:v9";
  spec = ParseSpec(with_csi);
  ASSERT_TRUE(spec.ok());
  ds = RenderDaemonSet(Owner(with_csi), *spec, RenderOptions{});
  EXPECT_EQ(ds["spec"]["template"]["spec"]["containers"][1]["image"], "registry.example/tw-csi:2");
  EXPECT_EQ(ds["spec"]["template"]["spec"]["containers"][2]["image"],
            "mirror.example/registrar:v9");

  with_csi["csi"]["kubeletDirectory"] = "relative";
  auto bad = ParseSpec(with_csi);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("spec.csi.kubeletDirectory"), std::string::npos)
      << bad.status().ToString();
}

TEST_F(RenderTest, TemplateHashFollowsTheSpec) {
  json a = RenderDaemonSet(tw_, spec_, RenderOptions{});
  spec_.dram_capacity = uint64_t{32} << 30;
  json b = RenderDaemonSet(tw_, spec_, RenderOptions{});
  auto hash = [](const json& ds) {
    return ds["spec"]["template"]["metadata"]["annotations"][kAnnotationTemplateHash];
  };
  EXPECT_NE(hash(a), hash(b));
  EXPECT_NE(a["metadata"]["annotations"][kAnnotationAppliedHash],
            b["metadata"]["annotations"][kAnnotationAppliedHash]);
  EXPECT_EQ(RenderDaemonSet(tw_, spec_, RenderOptions{}), b) << "rendering is deterministic";
}

TEST(RenderPeersTest, SortedJsonAsDesignSays) {
  std::string text = RenderPeersJson({{"b", "10.0.0.2", 7470}, {"a", "10.0.0.1", 7471}});
  json j = json::parse(text);
  ASSERT_EQ(j["peers"].size(), 2u);
  EXPECT_EQ(j["peers"][0]["node"], "a");
  EXPECT_EQ(j["peers"][0]["address"], "10.0.0.1");
  EXPECT_EQ(j["peers"][0]["port"], 7471);
  EXPECT_EQ(RenderPeersJson({}), "{\"peers\":[]}\n");
}

TEST(RenderExamplesTest, DramOnlyConfigRoundTrips) {
  auto spec = ParseSpec(json::parse(R"({"tiers":{"dram":{"capacity":"4Gi"}}})"));
  ASSERT_TRUE(spec.ok());
  json cm = RenderConfigMap(Owner(json::object()), *spec);
  auto parsed = config::ParseYaml(cm["data"]["twd.yaml"].get<std::string>());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_TRUE(parsed->nvme.paths.empty());
  EXPECT_EQ(parsed->socket.path, "/run/tokenwarehouse/twd.sock");
}

}  // namespace
}  // namespace tw::op
