// The pod webhook's decision: the JSON patch PlanPodPatch() produces (applied with
// nlohmann's RFC 6902 implementation, then planned again: nothing left to add), and
// PodInjector::Review() on whole AdmissionReviews, well-formed and not.
#include "tw/operator/pod_injector.h"

#include <map>
#include <random>

#include "gtest/gtest.h"
#include "tw/operator/kube_config.h"

namespace tw::op {
namespace {

using json = nlohmann::json;

const InjectTarget kTarget{"inference/cache", 65532, ""};

json Pod(json spec) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", "engine"}, {"labels", {{kInjectLabel, "cache"}}}}},
          {"spec", std::move(spec)}};
}

json Engine() { return {{"name", "engine"}, {"image", "vllm"}}; }

// Applies the planned patch and checks that planning again finds nothing to add.
json Mutate(const json& pod, const InjectTarget& target = kTarget) {
  auto patch = PlanPodPatch(pod, target);
  EXPECT_TRUE(patch.ok()) << patch.status().ToString();
  if (!patch.ok()) return pod;
  json out = pod.patch(*patch);
  auto again = PlanPodPatch(out, target);
  EXPECT_TRUE(again.ok()) << again.status().ToString();
  if (again.ok()) {
    EXPECT_EQ(*again, json::array()) << "not idempotent: " << again->dump();
  }
  return out;
}

TEST(PlanPodPatch, PlainPodGetsVolumeMountEnvGroupAndAnnotation) {
  json out = Mutate(Pod({{"containers", json::array({Engine()})}}));
  ASSERT_EQ(out["spec"]["volumes"].size(), 1u);
  json v = out["spec"]["volumes"][0];
  EXPECT_EQ(v["name"], "tokenwarehouse");
  EXPECT_EQ(v["csi"]["driver"], "csi.tokenwarehouse.io");
  EXPECT_EQ(v["csi"]["readOnly"], true);
  EXPECT_EQ(v["csi"]["volumeAttributes"], json({{"warehouse", "inference/cache"}}));
  json c = out["spec"]["containers"][0];
  EXPECT_EQ(c["volumeMounts"], json::array({{{"name", "tokenwarehouse"},
                                             {"mountPath", "/run/tokenwarehouse"},
                                             {"readOnly", true}}}));
  EXPECT_EQ(c["env"],
            json::array({{{"name", "TW_SOCKET"}, {"value", "/run/tokenwarehouse/twd.sock"}}}));
  EXPECT_EQ(out["spec"]["securityContext"]["supplementalGroups"], json::array({65532}));
  EXPECT_EQ(out["metadata"]["annotations"][kInjectedAnnotation], "inference/cache");
  EXPECT_EQ(out["metadata"]["labels"][kInjectLabel], "cache");  // untouched
}

TEST(PlanPodPatch, ExistingMountsEnvAndContainersAreKept) {
  json with_mount = Engine();
  with_mount["volumeMounts"] =
      json::array({{{"name", "models"}, {"mountPath", "/models"}},
                   {{"name", "own"}, {"mountPath", "/run/tokenwarehouse/"}}});  // already there
  with_mount["env"] = json::array({{{"name", "TW_SOCKET"}, {"value", "/custom.sock"}}});
  json sidecar = {{"name", "proxy"}, {"volumeMounts", json::array()}, {"env", json::array()}};
  json out =
      Mutate(Pod({{"containers", json::array({with_mount, sidecar})},
                  {"volumes", json::array({{{"name", "models"}, {"emptyDir", json::object()}},
                                           {{"name", "own"}, {"emptyDir", json::object()}}})}}));
  json c0 = out["spec"]["containers"][0];
  EXPECT_EQ(c0["volumeMounts"].size(), 2u) << "a mount at the path must not be duplicated";
  EXPECT_EQ(c0["env"], json::array({{{"name", "TW_SOCKET"}, {"value", "/custom.sock"}}}));
  json c1 = out["spec"]["containers"][1];
  ASSERT_EQ(c1["volumeMounts"].size(), 1u);
  EXPECT_EQ(c1["volumeMounts"][0]["mountPath"], "/run/tokenwarehouse");
  EXPECT_EQ(c1["env"][0]["name"], "TW_SOCKET");
  EXPECT_EQ(out["spec"]["volumes"].size(), 3u);
  EXPECT_EQ(out["spec"]["volumes"][2]["name"], "tokenwarehouse");
}

TEST(PlanPodPatch, InitContainersGetTheMountToo) {
  json init = {{"name", "warm"}, {"image", "busybox"}};
  json out = Mutate(
      Pod({{"initContainers", json::array({init})}, {"containers", json::array({Engine()})}}));
  EXPECT_EQ(out["spec"]["initContainers"][0]["volumeMounts"][0]["mountPath"],
            "/run/tokenwarehouse");
  EXPECT_EQ(out["spec"]["initContainers"][0]["env"][0]["name"], "TW_SOCKET");
  EXPECT_EQ(out["spec"]["containers"][0]["volumeMounts"][0]["name"], "tokenwarehouse");
}

TEST(PlanPodPatch, SupplementalGroupsAreAppendedOnce) {
  json out = Mutate(Pod({{"containers", json::array({Engine()})},
                         {"securityContext",
                          {{"runAsNonRoot", true}, {"supplementalGroups", json::array({1000})}}}}));
  EXPECT_EQ(out["spec"]["securityContext"]["supplementalGroups"], json::array({1000, 65532}));
  EXPECT_EQ(out["spec"]["securityContext"]["runAsNonRoot"], true);

  json has = Pod({{"containers", json::array({Engine()})},
                  {"securityContext", {{"supplementalGroups", json::array({65532})}}}});
  out = Mutate(has);
  EXPECT_EQ(out["spec"]["securityContext"]["supplementalGroups"], json::array({65532}));

  json no_groups =
      Pod({{"containers", json::array({Engine()})}, {"securityContext", {{"runAsUser", 1000}}}});
  out = Mutate(no_groups);
  EXPECT_EQ(out["spec"]["securityContext"]["supplementalGroups"], json::array({65532}));

  InjectTarget no_group = kTarget;
  no_group.supplemental_group.reset();
  out = Mutate(Pod({{"containers", json::array({Engine()})}}), no_group);
  EXPECT_FALSE(out["spec"].contains("securityContext"));
}

TEST(PlanPodPatch, ExistingCsiVolumeOfTheDriverIsUsed) {
  json vol = {
      {"name", "tw"},
      {"csi",
       {{"driver", "csi.tokenwarehouse.io"}, {"volumeAttributes", {{"warehouse", "other/one"}}}}}};
  json c = Engine();
  c["volumeMounts"] = json::array({{{"name", "tw"}, {"mountPath", "/run/tokenwarehouse"}}});
  c["env"] = json::array({{{"name", "TW_SOCKET"}, {"value", "/run/tokenwarehouse/twd.sock"}}});
  json pod = Pod({{"containers", json::array({c, Engine()})},
                  {"volumes", json::array({vol})},
                  {"securityContext", {{"supplementalGroups", json::array({65532})}}}});
  json out = Mutate(pod);
  EXPECT_EQ(out["spec"]["volumes"], json::array({vol})) << "the user's volume stays as written";
  EXPECT_EQ(out["spec"]["containers"][1]["volumeMounts"][0]["name"], "tw");
  EXPECT_EQ(out["spec"]["containers"][0], c);

  // Everything already there, annotation included: the patch is empty.
  out["spec"]["containers"] = json::array({c});
  auto patch = PlanPodPatch(out, kTarget);
  ASSERT_TRUE(patch.ok());
  EXPECT_EQ(*patch, json::array());
}

TEST(PlanPodPatch, NameTakenByAnotherVolumeGetsASuffix) {
  json out = Mutate(Pod(
      {{"containers", json::array({Engine()})},
       {"volumes", json::array({{{"name", "tokenwarehouse"}, {"emptyDir", json::object()}}})}}));
  EXPECT_EQ(out["spec"]["volumes"][1]["name"], "tokenwarehouse-2");
  EXPECT_EQ(out["spec"]["containers"][0]["volumeMounts"][0]["name"], "tokenwarehouse-2");
}

TEST(PlanPodPatch, AnnotationKeyIsEscapedAndOthersKept) {
  json pod = Pod({{"containers", json::array({Engine()})}});
  pod["metadata"]["annotations"] = {{"a/b", "c"}};
  json out = Mutate(pod);
  EXPECT_EQ(out["metadata"]["annotations"]["a/b"], "c");
  EXPECT_EQ(out["metadata"]["annotations"][kInjectedAnnotation], "inference/cache");
}

TEST(PlanPodPatch, MalformedPodsAreInvalidArgument) {
  for (const json& pod : {json("pod"), json{{"spec", 3}}, json{{"metadata", json::object()}},
                          Pod({{"containers", json::object()}}),
                          Pod({{"containers", json::array({Engine()})}, {"volumes", "x"}}),
                          Pod({{"containers", json::array({7})}}),
                          Pod({{"containers", json::array({{{"name", "a"}, {"env", 1}}})}}),
                          Pod({{"containers", json::array({Engine()})}, {"securityContext", 1}}),
                          Pod({{"containers", json::array({Engine()})},
                               {"securityContext", {{"supplementalGroups", "x"}}}})}) {
    auto patch = PlanPodPatch(pod, kTarget);
    EXPECT_EQ(patch.status().code(), StatusCode::kInvalidArgument) << pod.dump();
  }
}

TEST(SocketGroupId, FromTheSpec) {
  TokenWarehouseSpec spec;
  EXPECT_EQ(*SocketGroupId(spec), 65532);
  spec.socket_group = "disk";
  EXPECT_EQ(*SocketGroupId(spec), 6);
  spec.socket_group = "4000";
  EXPECT_EQ(*SocketGroupId(spec), 4000);
  spec.socket_group = "inference";
  EXPECT_EQ(SocketGroupId(spec).status().code(), StatusCode::kNotFound);
  spec.socket_mode = 0666;
  EXPECT_FALSE(SocketGroupId(spec)->has_value()) << "everyone may use the socket";
}

class MapSource : public WarehouseSource {
 public:
  std::map<std::string, std::shared_ptr<const json>> objects;
  bool synced = true;

  void Add(const std::string& ns, const std::string& name, json spec) {
    objects[ns + "/" + name] = std::make_shared<const json>(
        json{{"metadata", {{"namespace", ns}, {"name", name}}}, {"spec", std::move(spec)}});
  }
  std::shared_ptr<const json> Get(std::string_view ns, std::string_view name) const override {
    auto it = objects.find(std::string(ns) + "/" + std::string(name));
    return it == objects.end() ? nullptr : it->second;
  }
  std::vector<std::shared_ptr<const json>> List() const override {
    std::vector<std::shared_ptr<const json>> out;
    for (const auto& [k, v] : objects) out.push_back(v);
    return out;
  }
  bool Synced() const override { return synced; }
};

json Review(const json& pod, const std::string& ns = "inference") {
  return {{"apiVersion", "admission.k8s.io/v1"},
          {"kind", "AdmissionReview"},
          {"request",
           {{"uid", "705ab4f5-6393-11e8-b7cc-42010a800002"},
            {"kind", {{"group", ""}, {"version", "v1"}, {"kind", "Pod"}}},
            {"resource", {{"group", ""}, {"version", "v1"}, {"resource", "pods"}}},
            {"namespace", ns},
            {"operation", "CREATE"},
            {"object", pod}}}};
}

class ReviewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    json dram = {{"tiers", {{"dram", {{"capacity", "1GiB"}}}}}};
    json csi = dram;
    csi["csi"] = {{"enabled", true}};
    source_.Add("inference", "cache", csi);
    // No tw-csi serves its socket root.
    json plain = dram;
    plain["socket"] = {{"hostDirectory", "/run/tw-plain"}};
    source_.Add("inference", "plain", plain);
    // Another socket root, whose tw-csi comes with "carrier".
    json other = dram;
    other["socket"] = {{"hostDirectory", "/run/tw-other"}};
    source_.Add("other", "shared", other);
    other["csi"] = {{"enabled", true}};
    source_.Add("other", "carrier", other);
  }
  json Answer(const json& review, ReviewResult* result = nullptr) {
    ReviewResult r = injector_.Review(review.dump());
    EXPECT_EQ(r.http_status, 200) << r.body;
    if (result != nullptr) *result = r;
    json body = json::parse(r.body);
    EXPECT_EQ(body["apiVersion"], "admission.k8s.io/v1");
    EXPECT_EQ(body["kind"], "AdmissionReview");
    EXPECT_EQ(body["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    EXPECT_EQ(body["response"]["allowed"], true);
    return body["response"];
  }
  static json Patch(const json& response) {
    auto raw = Base64Decode(response.value("patch", ""), "patch");
    return raw.ok() ? json::parse(*raw) : json();
  }

  MapSource source_;
  PodInjector injector_{&source_};
};

TEST_F(ReviewTest, LabelledPodIsPatched) {
  json pod = Pod({{"containers", json::array({Engine()})}});
  json resp = Answer(Review(pod));
  EXPECT_EQ(resp["patchType"], "JSONPatch");
  json out = pod.patch(Patch(resp));
  EXPECT_EQ(out["spec"]["volumes"][0]["csi"]["volumeAttributes"]["warehouse"], "inference/cache");
  EXPECT_FALSE(resp.contains("warnings"));

  // The same review of the mutated pod: allowed, no patch.
  resp = Answer(Review(out));
  EXPECT_FALSE(resp.contains("patch"));
}

TEST_F(ReviewTest, WarehouseInAnotherNamespaceThroughTheAnnotation) {
  json pod = Pod({{"containers", json::array({Engine()})}});
  pod["metadata"]["labels"][kInjectLabel] = "shared";
  pod["metadata"]["annotations"] = {{kInjectNamespaceAnnotation, "other"}};
  // "shared" has no spec.csi, but "carrier" under the same socket.hostDirectory runs tw-csi.
  json out = pod.patch(Patch(Answer(Review(pod))));
  EXPECT_EQ(out["spec"]["volumes"][0]["csi"]["volumeAttributes"]["warehouse"], "other/shared");
}

TEST_F(ReviewTest, UnknownOrCsiLessWarehouseIsAllowedUnchangedWithAWarning) {
  json pod = Pod({{"containers", json::array({Engine()})}});
  pod["metadata"]["labels"][kInjectLabel] = "missing";
  json resp = Answer(Review(pod));
  EXPECT_FALSE(resp.contains("patch"));
  ASSERT_EQ(resp["warnings"].size(), 1u);
  EXPECT_NE(resp["warnings"][0].get<std::string>().find("no TokenWarehouse inference/missing"),
            std::string::npos)
      << resp["warnings"][0];

  pod["metadata"]["labels"][kInjectLabel] = "plain";
  resp = Answer(Review(pod));
  EXPECT_FALSE(resp.contains("patch"));
  EXPECT_NE(resp["warnings"][0].get<std::string>().find("spec.csi.enabled"), std::string::npos);

  source_.synced = false;
  pod["metadata"]["labels"][kInjectLabel] = "missing";
  resp = Answer(Review(pod));
  EXPECT_NE(resp["warnings"][0].get<std::string>().find("not yet listed"), std::string::npos);
}

TEST_F(ReviewTest, UnlabelledOrOtherOperationsAreAllowedUnchanged) {
  json pod = Pod({{"containers", json::array({Engine()})}});
  pod["metadata"]["labels"].erase(kInjectLabel);
  EXPECT_FALSE(Answer(Review(pod)).contains("patch"));
  json review = Review(Pod({{"containers", json::array({Engine()})}}));
  review["request"]["operation"] = "UPDATE";
  EXPECT_FALSE(Answer(review).contains("patch"));
  review["request"]["operation"] = "CREATE";
  review["request"]["subResource"] = "binding";
  EXPECT_FALSE(Answer(review).contains("patch"));
}

TEST_F(ReviewTest, MalformedPodIsAllowedWithAWarning) {
  json pod = Pod({{"containers", "not a list"}});
  ReviewResult r;
  json resp = Answer(Review(pod), &r);
  EXPECT_FALSE(resp.contains("patch"));
  EXPECT_FALSE(r.patched);
  EXPECT_NE(resp["warnings"][0].get<std::string>().find("spec.containers"), std::string::npos);
}

TEST_F(ReviewTest, MalformedReviewsAre400) {
  json no_uid = Review(Pod({{"containers", json::array({Engine()})}}));
  no_uid["request"].erase("uid");
  json v1beta1 = Review(Pod({{"containers", json::array({Engine()})}}));
  v1beta1["apiVersion"] = "admission.k8s.io/v1beta1";
  for (const std::string& body :
       {std::string(""), std::string("{"), std::string("[1,2]"), std::string("\"x\""),
        std::string("{\"apiVersion\":\"admission.k8s.io/v1\"}"), no_uid.dump(), v1beta1.dump(),
        std::string(1000, '[')}) {
    ReviewResult r = injector_.Review(body);
    EXPECT_EQ(r.http_status, 400) << body.substr(0, 80);
    EXPECT_NE(r.body.find("malformed AdmissionReview"), std::string::npos) << r.body;
  }
}

// Seeded cuts and byte flips of a valid review: every answer is a 400 with a reason or a
// well-formed AdmissionReview that allows the pod; nothing throws or crashes.
TEST_F(ReviewTest, MutatedReviewsNeverCrash) {
  json pod = Pod({{"containers", json::array({Engine()})},
                  {"securityContext", {{"supplementalGroups", json::array({1})}}}});
  const std::string valid = Review(pod).dump();
  std::mt19937 rng(29);
  int answered = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string in = valid;
    if (rng() % 2 == 0) {
      in.resize(rng() % in.size());
    } else {
      static constexpr char kBytes[] = "{}[]\":,0aZ\\ ";
      for (int m = 0; m < 3; ++m) in[rng() % in.size()] = kBytes[rng() % (sizeof kBytes - 1)];
    }
    ReviewResult r = injector_.Review(in);
    if (r.http_status == 400) {
      EXPECT_NE(r.body.find("malformed AdmissionReview"), std::string::npos);
      continue;
    }
    ASSERT_EQ(r.http_status, 200);
    json body = json::parse(r.body);
    ASSERT_EQ(body["response"]["allowed"], true);
    ++answered;
  }
  EXPECT_GT(answered, 0);
}

}  // namespace
}  // namespace tw::op
