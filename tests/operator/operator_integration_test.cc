// An in-process tw-operator against the fake API server: the controller contract end to end.
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "fake_cluster.h"
#include "gtest/gtest.h"
#include "tw/common/config.h"
#include "tw/operator/operator.h"
#include "tw/operator/render.h"

namespace tw::op {
namespace {

using nlohmann::json;
using testing::ConditionOf;
using testing::Eventually;
using testing::FakeCluster;

json DramSpec(const std::string& capacity = "4Gi") {
  return {{"tiers", {{"dram", {{"capacity", capacity}}}}}};
}

class OperatorTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cluster_.ok()); }
  void TearDown() override {
    if (op_) op_->Stop();
  }

  void StartOperator() {
    auto op = Operator::Create(cluster_.Options());
    ASSERT_TRUE(op.ok()) << op.status().ToString();
    op_ = std::move(*op);
    ASSERT_TRUE(op_->Start().ok());
  }

  json GetOrNull(const ResourceType& type, const std::string& ns, const std::string& name) {
    auto got = cluster_.Get(type, ns, name);
    return got.ok() ? *got : json(nullptr);
  }
  json Tw(const std::string& name, const std::string& ns = "default") {
    return GetOrNull(kinds::kTokenWarehouse, ns, name);
  }
  bool ConditionIs(const std::string& name, const std::string& type, const std::string& status,
                   const std::string& reason = "") {
    json tw = Tw(name);
    json c = tw.is_null() ? json(nullptr) : ConditionOf(tw, type);
    return c.is_object() && c["status"] == status && (reason.empty() || c["reason"] == reason);
  }
  int64_t ObservedGeneration(const std::string& name) {
    json tw = Tw(name);
    if (tw.is_null()) return -1;
    return tw.value("status", json::object()).value("observedGeneration", int64_t{-1});
  }

  FakeCluster cluster_;
  std::unique_ptr<Operator> op_;
};

TEST_F(OperatorTest, CreateMakesChildrenWithContentAndOwners) {
  StartOperator();
  auto applied = cluster_.ApplyTokenWarehouse("default", "pool", DramSpec());
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  std::string uid = (*applied)["metadata"]["uid"];

  ASSERT_TRUE(Eventually([&] { return ObservedGeneration("pool") == 1; }));
  for (auto [type, name] : std::vector<std::pair<const ResourceType*, std::string>>{
           {&kinds::kConfigMap, "pool-twd-config"},
           {&kinds::kConfigMap, "pool-twd-peers"},
           {&kinds::kService, "pool-twd"},
           {&kinds::kDaemonSet, "pool-twd"}}) {
    json child = GetOrNull(*type, "default", name);
    ASSERT_TRUE(child.is_object()) << name << " missing";
    const json& ref = child["metadata"]["ownerReferences"][0];
    EXPECT_EQ(ref["uid"], uid) << name;
    EXPECT_EQ(ref["kind"], "TokenWarehouse");
    EXPECT_EQ(ref["controller"], true);
    EXPECT_EQ(child["metadata"]["labels"][kLabelManagedBy], kManagedByValue);
  }
  // The twd config is what tw_config parses back.
  json cm = GetOrNull(kinds::kConfigMap, "default", "pool-twd-config");
  auto cfg = config::ParseYaml(cm["data"]["twd.yaml"].get<std::string>());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->dram.capacity, uint64_t{4} << 30);
  json peers =
      json::parse(GetOrNull(kinds::kConfigMap, "default", "pool-twd-peers")["data"]["peers.json"]
                      .get<std::string>());
  EXPECT_EQ(peers["peers"].size(), 0u);
  json svc = GetOrNull(kinds::kService, "default", "pool-twd");
  EXPECT_EQ(svc["spec"]["clusterIP"], "None");

  json tw = Tw("pool");
  EXPECT_EQ(tw["metadata"]["finalizers"][0], kFinalizer);
  EXPECT_EQ(ConditionOf(tw, "ConfigValid")["status"], "True");
  EXPECT_EQ(tw["status"]["socketPath"], "/run/tokenwarehouse/default/pool/twd.sock");
  EXPECT_EQ(tw["status"]["phase"], "Pending");
}

TEST_F(OperatorTest, SpecChangeUpdatesChildrenAndObservedGeneration) {
  StartOperator();
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", DramSpec("4Gi")).ok());
  ASSERT_TRUE(Eventually([&] { return ObservedGeneration("pool") == 1; }));
  json ds1 = GetOrNull(kinds::kDaemonSet, "default", "pool-twd");
  ASSERT_TRUE(ds1.is_object());

  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", DramSpec("8Gi")).ok());
  ASSERT_TRUE(Eventually([&] { return ObservedGeneration("pool") == 2; }));
  json cm = GetOrNull(kinds::kConfigMap, "default", "pool-twd-config");
  auto cfg = config::ParseYaml(cm["data"]["twd.yaml"].get<std::string>());
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(cfg->dram.capacity, uint64_t{8} << 30);
  json ds2 = GetOrNull(kinds::kDaemonSet, "default", "pool-twd");
  auto hash = [](const json& ds) {
    return ds["spec"]["template"]["metadata"]["annotations"][kAnnotationTemplateHash];
  };
  EXPECT_NE(hash(ds1), hash(ds2)) << "pods must roll when the config changes";
  EXPECT_EQ(ConditionOf(Tw("pool"), "ConfigValid")["observedGeneration"], 2);
}

TEST_F(OperatorTest, DeletedChildIsRecreated) {
  StartOperator();
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", DramSpec()).ok());
  ASSERT_TRUE(
      Eventually([&] { return GetOrNull(kinds::kDaemonSet, "default", "pool-twd").is_object(); }));
  std::string old_uid = GetOrNull(kinds::kDaemonSet, "default", "pool-twd")["metadata"]["uid"];
  ASSERT_TRUE(cluster_.client().Delete(kinds::kDaemonSet, "default", "pool-twd").ok());
  ASSERT_TRUE(cluster_.client().Delete(kinds::kConfigMap, "default", "pool-twd-config").ok());
  EXPECT_TRUE(Eventually([&] {
    json ds = GetOrNull(kinds::kDaemonSet, "default", "pool-twd");
    return ds.is_object() && ds["metadata"]["uid"] != old_uid &&
           GetOrNull(kinds::kConfigMap, "default", "pool-twd-config").is_object();
  }));
}

TEST_F(OperatorTest, MemoryLimitTooLowIsConfigValidFalseThenFixed) {
  StartOperator();
  json spec = DramSpec("8Gi");
  spec["resources"] = {{"limits", {{"memory", "8Gi"}}}};
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", spec).ok());
  ASSERT_TRUE(
      Eventually([&] { return ConditionIs("pool", "ConfigValid", "False", "MemoryLimitTooLow"); }));
  EXPECT_EQ(Tw("pool")["status"]["phase"], "Invalid");
  EXPECT_TRUE(GetOrNull(kinds::kDaemonSet, "default", "pool-twd").is_null())
      << "a refused spec creates no pods";
  spec["resources"]["limits"]["memory"] = "12Gi";
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", spec).ok());
  EXPECT_TRUE(Eventually([&] { return ConditionIs("pool", "ConfigValid", "True"); }));
  EXPECT_TRUE(
      Eventually([&] { return GetOrNull(kinds::kDaemonSet, "default", "pool-twd").is_object(); }));
}

TEST_F(OperatorTest, SameNvmePathOnSameNodesRefusesTheNewerOne) {
  StartOperator();
  json spec = {{"tiers",
                {{"nvme",
                  {{"devices", json::array({{{"name", "nvme0"},
                                             {"hostPath", "/mnt/nvme0/tw.data"},
                                             {"capacity", "100Gi"}}})}}}}}};
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "first", spec).ok());
  ASSERT_TRUE(Eventually([&] { return ConditionIs("first", "ConfigValid", "True"); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // a later creationTimestamp
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "second", spec).ok());
  ASSERT_TRUE(Eventually(
      [&] { return ConditionIs("second", "ConfigValid", "False", "NvmePathConflict"); }));
  EXPECT_TRUE(ConditionIs("first", "ConfigValid", "True")) << "the older one keeps running";
  EXPECT_TRUE(GetOrNull(kinds::kDaemonSet, "default", "second-twd").is_null());

  // Disjoint node selectors do not conflict.
  json other = spec;
  other["nodeSelector"] = {{"pool", "b"}};
  json first = spec;
  first["nodeSelector"] = {{"pool", "a"}};
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "first", first).ok());
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "second", other).ok());
  EXPECT_TRUE(Eventually([&] { return ConditionIs("second", "ConfigValid", "True"); }));

  // Overlapping again, then the older one goes: the newer is accepted.
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "second", spec).ok());
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "first", spec).ok());
  ASSERT_TRUE(Eventually(
      [&] { return ConditionIs("second", "ConfigValid", "False", "NvmePathConflict"); }));
  ASSERT_TRUE(cluster_.client().Delete(kinds::kTokenWarehouse, "default", "first").ok());
  EXPECT_TRUE(Eventually([&] { return ConditionIs("second", "ConfigValid", "True"); }));
}

TEST_F(OperatorTest, DeleteRunsFinalizerAndChildrenGo) {
  StartOperator();
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", DramSpec()).ok());
  ASSERT_TRUE(
      Eventually([&] { return GetOrNull(kinds::kDaemonSet, "default", "pool-twd").is_object(); }));
  ASSERT_TRUE(Eventually([&] { return ObservedGeneration("pool") == 1; }));
  ASSERT_TRUE(cluster_.client().Delete(kinds::kTokenWarehouse, "default", "pool").ok());
  EXPECT_TRUE(Eventually([&] { return Tw("pool").is_null(); })) << "finalizer never removed";
  EXPECT_TRUE(GetOrNull(kinds::kDaemonSet, "default", "pool-twd").is_null());
  EXPECT_TRUE(GetOrNull(kinds::kConfigMap, "default", "pool-twd-config").is_null());
  EXPECT_TRUE(GetOrNull(kinds::kConfigMap, "default", "pool-twd-peers").is_null());
  EXPECT_TRUE(GetOrNull(kinds::kService, "default", "pool-twd").is_null());
}

TEST_F(OperatorTest, ReadinessPeersAndStatusFromPods) {
  StartOperator();
  json spec = DramSpec();
  spec["federation"] = {{"enabled", true}};
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", spec).ok());
  ASSERT_TRUE(
      Eventually([&] { return GetOrNull(kinds::kDaemonSet, "default", "pool-twd").is_object(); }));
  json ds = GetOrNull(kinds::kDaemonSet, "default", "pool-twd");
  ASSERT_TRUE(cluster_
                  .SetStatus("apps/v1", "DaemonSet", "default", "pool-twd",
                             {{"desiredNumberScheduled", 2},
                              {"observedGeneration", ds["metadata"]["generation"]},
                              {"numberReady", 1}})
                  .ok());
  ASSERT_TRUE(cluster_.AddPod("default", "pool", "node-a", true, "10.1.0.1").ok());
  ASSERT_TRUE(cluster_.AddPod("default", "pool", "node-b", false, "10.1.0.2").ok());
  ASSERT_TRUE(Eventually([&] {
    json tw = Tw("pool");
    return tw.is_object() && tw["status"].value("readyNodes", -1) == 1 &&
           tw["status"].value("desiredNodes", -1) == 2 &&
           tw["status"].value("updatedNodes", -1) == 2;
  }));
  json tw = Tw("pool");
  // The rollout is done (both pods run the current template) but one is not ready.
  EXPECT_EQ(tw["status"]["phase"], "Degraded");
  EXPECT_EQ(tw["status"]["notReadyNodes"][0]["node"], "node-b");
  EXPECT_EQ(ConditionOf(tw, "AllNodesReady")["status"], "False");
  EXPECT_EQ(ConditionOf(tw, "Available")["status"], "True");  // 1 of 2, maxUnavailable 1
  auto peers = [&] {
    json cm = GetOrNull(kinds::kConfigMap, "default", "pool-twd-peers");
    return cm.is_object() ? json::parse(cm["data"]["peers.json"].get<std::string>()) : json();
  };
  EXPECT_TRUE(Eventually([&] { return peers()["peers"].size() == 1; }));
  EXPECT_EQ(peers()["peers"][0]["address"], "10.1.0.1");
  EXPECT_EQ(peers()["peers"][0]["port"], 7470);

  ASSERT_TRUE(cluster_.AddPod("default", "pool", "node-b", true, "10.1.0.2").ok());
  ASSERT_TRUE(Eventually([&] { return Tw("pool")["status"].value("phase", "") == "Ready"; }));
  EXPECT_EQ(ConditionOf(Tw("pool"), "AllNodesReady")["status"], "True");
  EXPECT_TRUE(Eventually([&] { return peers()["peers"].size() == 2; }));

  // Status is written only when it changes: an idle period writes nothing.
  uint64_t writes = op_->reconciler().status_writes();
  op_->queue().Add("default/pool");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(op_->reconciler().status_writes(), writes);
}

TEST_F(OperatorTest, ConvergesThroughDroppedWatchesGoneAndServerErrors) {
  StartOperator();
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", DramSpec("4Gi")).ok());
  ASSERT_TRUE(Eventually([&] { return ObservedGeneration("pool") == 1; }));

  // Watches cut (cleanly and abruptly), history compacted (410 on re-watch), and a burst of
  // 500s and 429s on writes and lists.
  ASSERT_TRUE(cluster_.Admin("drop-watches", {{"abrupt", true}}).ok());
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", DramSpec("6Gi")).ok());
  ASSERT_TRUE(cluster_.Admin("compact", {{"expire_watches", true}}).ok());
  ASSERT_TRUE(
      cluster_
          .Admin("faults",
                 json::array({
                     {{"method", "PATCH"},
                      {"path_regex", "daemonsets"},
                      {"status", 500},
                      {"count", 3}},
                     {{"method", "PUT"}, {"path_regex", "/status"}, {"status", 429}, {"count", 2}},
                     {{"verb", "list"}, {"status", 503}, {"count", 2}},
                 }))
          .ok());
  ASSERT_TRUE(cluster_.Admin("drop-watches", {{"abrupt", false}}).ok());
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", DramSpec("8Gi")).ok());

  EXPECT_TRUE(Eventually([&] { return ObservedGeneration("pool") == 3; }));
  json cm = GetOrNull(kinds::kConfigMap, "default", "pool-twd-config");
  auto cfg = config::ParseYaml(cm["data"]["twd.yaml"].get<std::string>());
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(cfg->dram.capacity, uint64_t{8} << 30);
  EXPECT_TRUE(Eventually([&] {
    json ds = GetOrNull(kinds::kDaemonSet, "default", "pool-twd");
    json want = RenderDaemonSet(Tw("pool"), *ParseSpec(Tw("pool")["spec"]), RenderOptions{});
    return ds.is_object() && ds["metadata"]["annotations"][kAnnotationAppliedHash] ==
                                 want["metadata"]["annotations"][kAnnotationAppliedHash];
  }));
  EXPECT_GT(op_->tokenwarehouses().relists(), 1u) << "the 410 must have caused a relist";
  // And a child deleted after all that is still noticed (the watches are live again).
  ASSERT_TRUE(cluster_.client().Delete(kinds::kService, "default", "pool-twd").ok());
  EXPECT_TRUE(
      Eventually([&] { return GetOrNull(kinds::kService, "default", "pool-twd").is_object(); }));
}

TEST_F(OperatorTest, ExamplesApplyAndBecomeValid) {
  StartOperator();
  for (const char* file : {"dram-pool.yaml", "nvme-cluster.yaml", "rdma-cluster.yaml"}) {
    auto manifest = testing::YamlFileToJson(std::string(TW_SOURCE_DIR) + "/examples/" + file);
    ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
    std::string ns = (*manifest)["metadata"].value("namespace", "default");
    std::string name = (*manifest)["metadata"]["name"];
    auto applied =
        cluster_.client().Apply(kinds::kTokenWarehouse, ns, name, *manifest, "test", true);
    ASSERT_TRUE(applied.ok()) << file << ": " << applied.status().ToString();
    EXPECT_TRUE(Eventually([&] {
      json tw = GetOrNull(kinds::kTokenWarehouse, ns, name);
      json c = tw.is_null() ? json(nullptr) : ConditionOf(tw, "ConfigValid");
      return c.is_object() && c["status"] == "True";
    })) << file
        << " is not valid: " << GetOrNull(kinds::kTokenWarehouse, ns, name).dump();
    EXPECT_TRUE(Eventually([&] {
      return GetOrNull(kinds::kDaemonSet, ns, name + "-twd").is_object();
    })) << file;
  }
}

// The (verb, resource) pairs of operator/rbac-requirements.txt (the one list the chart's RBAC
// is also checked against), as "resource.group[/subresource]" like the fake records them.
std::set<std::pair<std::string, std::string>> DocumentedRbac() {
  std::ifstream in(std::string(TW_SOURCE_DIR) + "/operator/rbac-requirements.txt");
  std::set<std::pair<std::string, std::string>> out;
  std::string line;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::string verb, path;
    if (!(words >> verb >> path)) continue;
    size_t slash = path.find('/');
    if (slash == std::string::npos) continue;
    std::string group = path.substr(0, slash), rest = path.substr(slash + 1);
    std::string resource = rest, sub;
    if (size_t s2 = rest.find('/'); s2 != std::string::npos) {
      resource = rest.substr(0, s2);
      sub = rest.substr(s2);
    }
    out.insert({verb, (group == "core" ? resource : resource + "." + group) + sub});
  }
  return out;
}

TEST_F(OperatorTest, UsesOnlyTheDocumentedRbac) {
  OperatorOptions options = cluster_.Options();
  options.leader_elect = true;
  options.leader_election.lease_duration = std::chrono::milliseconds(2000);
  options.leader_election.renew_deadline = std::chrono::milliseconds(1500);
  options.leader_election.retry_period = std::chrono::milliseconds(200);
  auto op = Operator::Create(options);
  ASSERT_TRUE(op.ok());
  op_ = std::move(*op);
  ASSERT_TRUE(op_->Start().ok());
  ASSERT_TRUE(Eventually([&] { return op_->IsLeader(); }));
  json spec = DramSpec();
  spec["metrics"] = {{"serviceMonitor", {{"enabled", true}}}};
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", spec).ok());
  ASSERT_TRUE(Eventually(
      [&] { return GetOrNull(kinds::kServiceMonitor, "default", "pool-twd").is_object(); }));
  ASSERT_TRUE(cluster_.client().Delete(kinds::kConfigMap, "default", "pool-twd-config").ok());
  ASSERT_TRUE(Eventually(
      [&] { return GetOrNull(kinds::kConfigMap, "default", "pool-twd-config").is_object(); }));
  ASSERT_TRUE(cluster_.client().Delete(kinds::kTokenWarehouse, "default", "pool").ok());
  ASSERT_TRUE(Eventually([&] { return Tw("pool").is_null(); }));
  EXPECT_TRUE(GetOrNull(kinds::kServiceMonitor, "default", "pool-twd").is_null());

  auto documented = DocumentedRbac();
  ASSERT_GT(documented.size(), 20u) << "operator/rbac-requirements.txt is missing or empty";
  auto used = cluster_.VerbsUsedBy("tw-operator/");
  ASSERT_FALSE(used.empty());
  for (const auto& pair : used) {
    EXPECT_TRUE(documented.count(pair))
        << pair.first << " " << pair.second << " is used but not in operator/rbac-requirements.txt";
  }
  for (const auto& must : std::vector<std::pair<std::string, std::string>>{
           {"patch", "daemonsets.apps"},
           {"update", "tokenwarehouses.tokenwarehouse.io/status"},
           {"watch", "pods"},
           {"update", "leases.coordination.k8s.io"}}) {
    EXPECT_NE(std::find(used.begin(), used.end(), must), used.end()) << must.second;
  }
}

TEST_F(OperatorTest, ServiceMonitorFollowsTheSpec) {
  StartOperator();
  json spec = DramSpec();
  spec["metrics"] = {{"serviceMonitor", {{"enabled", true}, {"labels", {{"release", "prom"}}}}}};
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", spec).ok());
  ASSERT_TRUE(Eventually(
      [&] { return GetOrNull(kinds::kServiceMonitor, "default", "pool-twd").is_object(); }));
  json sm = GetOrNull(kinds::kServiceMonitor, "default", "pool-twd");
  EXPECT_EQ(sm["metadata"]["labels"]["release"], "prom");
  EXPECT_EQ(sm["spec"]["endpoints"][0]["port"], "metrics");
  spec["metrics"]["serviceMonitor"]["enabled"] = false;
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", spec).ok());
  EXPECT_TRUE(Eventually(
      [&] { return GetOrNull(kinds::kServiceMonitor, "default", "pool-twd").is_null(); }));
}

TEST_F(OperatorTest, WatchesOnlyItsNamespace) {
  OperatorOptions options = cluster_.Options();
  options.watch_namespace = "inference";
  auto op = Operator::Create(options);
  ASSERT_TRUE(op.ok());
  op_ = std::move(*op);
  ASSERT_TRUE(op_->Start().ok());
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "elsewhere", DramSpec()).ok());
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("inference", "mine", DramSpec()).ok());
  ASSERT_TRUE(Eventually(
      [&] { return GetOrNull(kinds::kDaemonSet, "inference", "mine-twd").is_object(); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(GetOrNull(kinds::kDaemonSet, "default", "elsewhere-twd").is_null());
  EXPECT_FALSE(Tw("elsewhere").value("status", json::object()).contains("observedGeneration"));
}

TEST_F(OperatorTest, ResyncUndoesEditsByHand) {
  OperatorOptions options = cluster_.Options();
  options.resync_period = std::chrono::seconds(1);
  auto op = Operator::Create(options);
  ASSERT_TRUE(op.ok());
  op_ = std::move(*op);
  ASSERT_TRUE(op_->Start().ok());
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", DramSpec()).ok());
  ASSERT_TRUE(
      Eventually([&] { return GetOrNull(kinds::kDaemonSet, "default", "pool-twd").is_object(); }));
  auto max_unavailable = [&] {
    json ds = GetOrNull(kinds::kDaemonSet, "default", "pool-twd");
    return ds.is_object() ? ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"]
                          : json();
  };
  ASSERT_EQ(max_unavailable(), 1);
  // Someone edits a field the operator owns; the applied-hash annotation stays.
  ASSERT_TRUE(
      cluster_.client()
          .MergePatch(
              kinds::kDaemonSet, "default", "pool-twd",
              {{"spec", {{"updateStrategy", {{"rollingUpdate", {{"maxUnavailable", 7}}}}}}}})
          .ok());
  ASSERT_EQ(max_unavailable(), 7);
  EXPECT_TRUE(Eventually([&] { return max_unavailable() == 1; }));
}

TEST_F(OperatorTest, ServesHealthReadyAndMetrics) {
  OperatorOptions options = cluster_.Options();
  options.metrics_address = "127.0.0.1:0";
  options.health_address = "127.0.0.1:0";
  auto op = Operator::Create(options);
  ASSERT_TRUE(op.ok());
  op_ = std::move(*op);
  ASSERT_TRUE(op_->Start().ok());
  ASSERT_GT(op_->metrics_port(), 0);
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "pool", DramSpec()).ok());
  ASSERT_TRUE(Eventually([&] { return ObservedGeneration("pool") == 1; }));
  KubeConfig local;
  local.server = "http://127.0.0.1:" + std::to_string(op_->metrics_port());
  auto http = KubeClient::Create(local);
  ASSERT_TRUE(http.ok());
  auto get = [&](const std::string& path) {
    auto r = (*http)->Do("GET", path);
    return r.ok() ? *r : HttpResponse{};
  };
  EXPECT_EQ(get("/healthz").status, 200);
  EXPECT_TRUE(Eventually([&] { return get("/readyz").status == 200; }));
  HttpResponse metrics = get("/metrics");
  EXPECT_EQ(metrics.status, 200);
  for (const char* name :
       {"tokenwarehouse_operator_reconcile_total", "tokenwarehouse_operator_reconcile_errors_total",
        "tokenwarehouse_operator_reconcile_duration_seconds",
        "tokenwarehouse_operator_workqueue_depth", "tokenwarehouse_operator_workqueue_adds_total",
        "tokenwarehouse_operator_workqueue_retries_total",
        "tokenwarehouse_operator_leader_status"}) {
    EXPECT_NE(metrics.body.find(name), std::string::npos) << name;
  }
}

// Objects whose fields have the wrong types (which a real API server's schema would refuse, but
// a buggy webhook, an old CRD or a hand edit of etcd can still serve) are an error for that
// object: skipped or failed, logged, counted; the operator keeps reconciling the others.
TEST_F(OperatorTest, MalformedObjectsAreErrorsNotCrashes) {
  StartOperator();
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "good", DramSpec()).ok());
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "bad", DramSpec()).ok());
  ASSERT_TRUE(Eventually([&] { return ObservedGeneration("good") == 1; }));
  ASSERT_TRUE(Eventually([&] { return ObservedGeneration("bad") == 1; }));
  ASSERT_TRUE(cluster_.AddPod("default", "good", "node-a", true, "10.0.0.1").ok());
  const std::string api = kinds::kTokenWarehouse.ApiVersion();
  auto set_raw = [&](const std::string& api_version, const std::string& kind,
                     const std::string& name, const json& fields) {
    return cluster_.Admin("set-raw", {{"apiVersion", api_version},
                                      {"kind", kind},
                                      {"namespace", "default"},
                                      {"name", name},
                                      {"fields", fields}});
  };

  // 1. A status of the wrong type: the reconciler's pass fails for "bad" alone.
  const uint64_t errors_before = op_->reconcile_errors();
  ASSERT_TRUE(set_raw(api, "TokenWarehouse", "bad", {{"status", "not an object"}}).ok());
  // (The operator counts the failed pass after the reconciler has counted the object.)
  ASSERT_TRUE(Eventually([&] {
    return op_->reconciler().malformed_objects() > 0 && op_->reconcile_errors() > errors_before;
  }));

  // 2. A name that is not a string: the informer skips the object.
  ASSERT_TRUE(set_raw(api, "TokenWarehouse", "bad", {{"metadata", {{"name", 42}}}}).ok());
  ASSERT_TRUE(Eventually([&] { return op_->tokenwarehouses().malformed_objects() > 0; }));

  // 3. A pod whose owner label is a number: the informer skips it, so it cannot fail the
  // passes of the TokenWarehouses that read their pods.
  const std::string pod = DaemonSetName("good") + "-node-a";  // FakeCluster::AddPod's name
  json labels = ChildLabels("good");
  labels[kLabelOwner] = 42;
  ASSERT_TRUE(set_raw("v1", "Pod", pod, {{"metadata", {{"labels", labels}}}}).ok());
  ASSERT_TRUE(Eventually([&] { return op_->pods().malformed_objects() > 0; }));

  // The operator is alive and still reconciles the good object.
  ASSERT_TRUE(cluster_.ApplyTokenWarehouse("default", "good", DramSpec("6Gi")).ok());
  EXPECT_TRUE(Eventually([&] { return ObservedGeneration("good") == 2; }));
}

}  // namespace
}  // namespace tw::op
