// Config defaults have one source of truth, checked three ways: the CRD's `default:` values
// (crds/ and the chart's copy), the operator's TokenWarehouseSpec defaults (what ParseSpec
// assumes when a field is absent, as it is when the API server does not default), and twd's
// own tw_config defaults (what twd assumes when the operator's config leaves a field out).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <sstream>
#include <string>

#include "tw/common/config.h"
#include "tw/operator/render.h"
#include "tw/operator/spec.h"

namespace tw::op {
namespace {

using nlohmann::json;

std::string SourcePath(const std::string& rel) { return std::string(TW_SOURCE_DIR) + "/" + rel; }

YAML::Node SpecSchema(const std::string& crd_path) {
  YAML::Node crd = YAML::LoadFile(SourcePath(crd_path));
  return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
}

// A CRD default as the JSON value the API server would store.
json DefaultValue(const YAML::Node& schema) {
  const std::string text = schema["default"].as<std::string>();
  const std::string type = schema["type"] ? schema["type"].as<std::string>() : "";
  if (type == "integer") return std::stoll(text);
  if (type == "number") return std::stod(text);
  if (type == "boolean") return text == "true";
  if (type.empty() && schema["x-kubernetes-int-or-string"]) {
    const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
    return digits ? json(std::stoll(text)) : json(text);
  }
  return text;
}

// What the API server does: fills every absent field that has a default, in every object (and
// array item) present. Records each default applied as "path=value".
void ApplyDefaults(const YAML::Node& schema, json& value, const std::string& path,
                   std::vector<std::string>* applied) {
  if (value.is_object() && schema["properties"]) {
    for (const auto& prop : schema["properties"]) {
      const std::string name = prop.first.as<std::string>();
      const YAML::Node& sub = prop.second;
      const std::string sub_path = path.empty() ? name : path + "." + name;
      if (!value.contains(name)) {
        if (!sub["default"]) continue;
        value[name] = DefaultValue(sub);
        applied->push_back(sub_path + "=" + value[name].dump());
      }
      ApplyDefaults(sub, value[name], sub_path, applied);
    }
  } else if (value.is_array() && schema["items"]) {
    for (auto& item : value) ApplyDefaults(schema["items"], item, path + "[]", applied);
  }
}

// A spec with every optional object present (so every nested default applies) and no field
// that has a default.
json SpecWithEveryObject() {
  return json::parse(R"({
    "tiers": {
      "dram": {"capacity": "1Gi"},
      "nvme": {"devices": [{"name": "d0", "hostPath": "/var/lib/tw/d0", "capacity": "10Gi"}]},
      "gpu": {}
    },
    "admission": {},
    "quotas": {},
    "socket": {},
    "csi": {"enabled": true},
    "federation": {"rdmaResource": {"name": "rdma/hca"}},
    "metrics": {"serviceMonitor": {}},
    "updateStrategy": {}
  })");
}

json Tw(const json& spec) {
  return {{"apiVersion", "tokenwarehouse.io/v1alpha1"},
          {"kind", "TokenWarehouse"},
          {"metadata", {{"name", "pool"}, {"namespace", "default"}, {"uid", "u-1"}}},
          {"spec", spec}};
}

// Line-by-line differences of two texts, for a readable failure.
std::string Diff(const std::string& a, const std::string& b) {
  std::istringstream sa(a), sb(b);
  std::string la, lb, out;
  for (;;) {
    const bool more_a = static_cast<bool>(std::getline(sa, la));
    const bool more_b = static_cast<bool>(std::getline(sb, lb));
    if (!more_a && !more_b) break;
    if (la != lb) out += "  - " + la + "\n  + " + lb + "\n";
    la.clear();
    lb.clear();
  }
  return out;
}

class DefaultsTest : public ::testing::TestWithParam<const char*> {};

// The operator assumes, for an absent field, exactly the CRD's default: the spec with the
// CRD's defaults applied renders the same children as the spec without them.
TEST_P(DefaultsTest, OperatorDefaultsAreTheCrdDefaults) {
  const YAML::Node schema = SpecSchema(GetParam());
  ASSERT_TRUE(schema["properties"]) << GetParam();
  json bare = SpecWithEveryObject();
  json defaulted = bare;
  std::vector<std::string> applied;
  ApplyDefaults(schema, defaulted, "", &applied);
  ASSERT_GE(applied.size(), 30u) << "the walk found too few defaults; did the CRD's shape change?";

  auto a = ParseSpec(bare);
  auto b = ParseSpec(defaulted);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  std::string applied_list;
  for (const auto& s : applied) applied_list += "  " + s + "\n";
  EXPECT_EQ(config::RenderYaml(TwdConfig(*a)), config::RenderYaml(TwdConfig(*b)))
      << "twd config differs:\n"
      << Diff(config::RenderYaml(TwdConfig(*a)), config::RenderYaml(TwdConfig(*b)))
      << "CRD defaults applied:\n"
      << applied_list;
  RenderOptions options;
  const std::string ds_a = RenderDaemonSet(Tw(bare), *a, options).dump(2);
  const std::string ds_b = RenderDaemonSet(Tw(defaulted), *b, options).dump(2);
  EXPECT_TRUE(ds_a == ds_b) << "DaemonSet differs:\n"
                            << Diff(ds_a, ds_b) << "CRD defaults applied:\n"
                            << applied_list;
  EXPECT_EQ(RenderService(Tw(bare), *a).dump(), RenderService(Tw(defaulted), *b).dump());
  EXPECT_EQ(RenderServiceMonitor(Tw(bare), *a).dump(),
            RenderServiceMonitor(Tw(defaulted), *b).dump());
  EXPECT_EQ(a->chunk_tokens, b->chunk_tokens);
  EXPECT_EQ(a->max_unavailable, b->max_unavailable);
  EXPECT_EQ(a->rdma_count, b->rdma_count);
  EXPECT_EQ(a->image_pull_policy, b->image_pull_policy);
  EXPECT_EQ(a->gpu_visible, b->gpu_visible);
}

INSTANTIATE_TEST_SUITE_P(Crds, DefaultsTest,
                         ::testing::Values("crds/tokenwarehouses.tokenwarehouse.io.yaml",
                                           "charts/tokenwarehouse/crds/"
                                           "tokenwarehouses.tokenwarehouse.io.yaml"));

// twd's own defaults are the operator's: the config the operator renders for a spec that sets
// nothing but a DRAM tier is tw_config's default config, except for the fields the operator
// sets from the pod's layout (socket and admin socket paths in the pod, the peers file, the
// data paths and the DRAM size).
TEST(TwConfigDefaults, AreTheOperatorDefaults) {
  auto spec = ParseSpec(json::parse(R"({"tiers": {"dram": {"capacity": "1Gi"}}})"));
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  config::Config rendered = TwdConfig(*spec);
  const config::Config defaults;
  rendered.socket.path = defaults.socket.path;
  rendered.admin_socket.path = defaults.admin_socket.path;
  rendered.mesh.peers_file = defaults.mesh.peers_file;
  rendered.nvme.paths = defaults.nvme.paths;
  rendered.dram.capacity = defaults.dram.capacity;
  EXPECT_EQ(config::RenderYaml(rendered), config::RenderYaml(defaults))
      << Diff(config::RenderYaml(rendered), config::RenderYaml(defaults));
}

}  // namespace
}  // namespace tw::op
