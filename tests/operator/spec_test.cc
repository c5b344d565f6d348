#include "tw/operator/spec.h"

#include "gtest/gtest.h"
#include "tw/common/config.h"

namespace tw::op {
namespace {

using nlohmann::json;
constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

json DramOnly() { return json::parse(R"({"tiers":{"dram":{"capacity":"8Gi"}}})"); }

json NvmeCluster() {
  return json::parse(R"({
    "tiers": {
      "dram": {"capacity": "16GiB", "pinned": true},
      "nvme": {"devices": [
        {"name": "nvme0", "hostPath": "/mnt/nvme0/tw.data", "capacity": "1Ti"},
        {"name": "nvme1", "hostPath": "/dev/nvme1n1", "hostPathType": "BlockDevice", "capacity": "0"}
      ], "queueDepth": 64}
    },
    "defaultDurability": "disk",
    "federation": {"enabled": true, "port": 7500}
  })");
}

TEST(SpecTest, DefaultsMatchTheCrd) {
  auto spec = ParseSpec(DramOnly());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_TRUE(spec->has_dram);
  EXPECT_EQ(spec->dram_capacity, 8 * kGiB);
  EXPECT_EQ(spec->image_pull_policy, "IfNotPresent");
  EXPECT_EQ(spec->chunk_tokens, 256);
  EXPECT_EQ(spec->default_durability, config::Durability::kMemory);
  EXPECT_EQ(spec->shutdown_grace, std::chrono::seconds(20));
  EXPECT_DOUBLE_EQ(spec->dram_high_watermark, 0.95);
  EXPECT_DOUBLE_EQ(spec->dram_low_watermark, 0.85);
  EXPECT_EQ(spec->socket_host_directory, "/run/tokenwarehouse");
  EXPECT_EQ(spec->socket_mode, 0660u);
  EXPECT_EQ(spec->metrics_port, 9400u);
  EXPECT_EQ(spec->federation_port, 7470u);
  EXPECT_FALSE(spec->federation_enabled);
  EXPECT_EQ(spec->max_unavailable, json(1));
  EXPECT_TRUE(spec->nvme_devices.empty());
}

TEST(SpecTest, ParsesNvmeCluster) {
  auto spec = ParseSpec(NvmeCluster());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  ASSERT_EQ(spec->nvme_devices.size(), 2u);
  EXPECT_EQ(spec->nvme_devices[0].capacity, uint64_t{1} << 40);
  EXPECT_EQ(spec->nvme_devices[1].host_path_type, "BlockDevice");
  EXPECT_EQ(spec->nvme_queue_depth, 64u);
  EXPECT_EQ(spec->default_durability, config::Durability::kDisk);
  EXPECT_TRUE(spec->dram_pinned);
  config::Config c = TwdConfig(*spec);
  ASSERT_EQ(c.nvme.paths.size(), 2u);
  EXPECT_EQ(c.nvme.paths[0].path, "/var/lib/tokenwarehouse/nvme0.data");
  EXPECT_EQ(c.nvme.paths[1].path, "/dev/tokenwarehouse/nvme1");
  EXPECT_EQ(c.mesh.port, 7500u);
  EXPECT_TRUE(c.mesh.enabled);
  EXPECT_EQ(c.mesh.peers_file, "/etc/tokenwarehouse/peers/peers.json");
  EXPECT_TRUE(config::Validate(c).ok()) << config::Validate(c).ToString();
  EXPECT_EQ(CheckSpec(*spec).problem, SpecProblem::kNone);
}

struct BadSpec {
  const char* json_text;
  const char* field;
};

class BadSpecTest : public ::testing::TestWithParam<BadSpec> {};

TEST_P(BadSpecTest, RejectedNamingTheField) {
  auto spec = ParseSpec(json::parse(GetParam().json_text));
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find(GetParam().field), std::string_view::npos)
      << spec.status().ToString();
}

INSTANTIATE_TEST_SUITE_P(
    Schema, BadSpecTest,
    ::testing::Values(
        BadSpec{R"({})", "spec.tiers"}, BadSpec{R"({"tiers":{}})", "spec.tiers"},
        BadSpec{R"({"tiers":{"dram":{}}})", "spec.tiers.dram.capacity"},
        BadSpec{R"({"tiers":{"dram":{"capacity":"lots"}}})", "spec.tiers.dram.capacity"},
        BadSpec{R"({"tiers":{"dram":{"capacity":"1Gi","highWatermark":1.5}}})",
                "spec.tiers.dram.highWatermark"},
        BadSpec{R"({"tiers":{"dram":{"capacity":"1Gi","lowWatermark":0}}})",
                "spec.tiers.dram.lowWatermark"},
        BadSpec{R"({"tiers":{"dram":{"capacity":"1Gi","highWatermark":0.5,"lowWatermark":0.6}}})",
                "spec.tiers.dram.lowWatermark"},
        BadSpec{R"({"tiers":{"nvme":{"devices":[]}}})", "spec.tiers.nvme.devices"},
        BadSpec{R"({"tiers":{"nvme":{"devices":[{"name":"a","capacity":"1Gi"}]}}})",
                "spec.tiers.nvme.devices[0].hostPath"},
        BadSpec{
            R"({"tiers":{"nvme":{"devices":[{"name":"a","hostPath":"rel","capacity":"1Gi"}]}}})",
            "spec.tiers.nvme.devices[0].hostPath"},
        BadSpec{R"({"tiers":{"dram":{"capacity":"1Gi"}},"federation":{"transport":"rdma"}})",
                "spec.federation.transport"},
        BadSpec{
            R"({"tiers":{"dram":{"capacity":"1Gi"}},"federation":{"transport":"carrier-pigeon"}})",
            "spec.federation.transport"},
        BadSpec{R"({"tiers":{"dram":{"capacity":"1Gi"}},"chunkTokens":0})", "spec.chunkTokens"},
        BadSpec{R"({"tiers":{"dram":{"capacity":"1Gi"}},"shutdownGrace":"soon"})",
                "spec.shutdownGrace"},
        BadSpec{R"({"tiers":{"dram":{"capacity":"1Gi"}},"imagePullPolicy":"Sometimes"})",
                "spec.imagePullPolicy"}));

TEST(SpecTest, RdmaWithResourceOrHostNetworkIsAccepted) {
  auto with_resource = ParseSpec(json::parse(
      R"({"tiers":{"dram":{"capacity":"1Gi"}},
          "federation":{"enabled":true,"transport":"rdma","rdmaResource":{"name":"rdma/hca"}}})"));
  ASSERT_TRUE(with_resource.ok()) << with_resource.status().ToString();
  EXPECT_EQ(with_resource->rdma_resource, "rdma/hca");
  EXPECT_EQ(with_resource->rdma_count, 1);
  auto with_host_net = ParseSpec(json::parse(
      R"({"tiers":{"dram":{"capacity":"1Gi"}},
          "federation":{"enabled":true,"transport":"rdma","hostNetwork":true}})"));
  ASSERT_TRUE(with_host_net.ok()) << with_host_net.status().ToString();
}

// auto needs no device: twd uses RDMA only between two twd that both have one.
TEST(SpecTest, AutoTransportNeedsNoDeviceAndReachesTheConfig) {
  auto spec = ParseSpec(json::parse(
      R"({"tiers":{"dram":{"capacity":"1Gi"}},"federation":{"enabled":true,"transport":"auto"}})"));
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->transport, config::Transport::kAuto);
  EXPECT_EQ(TwdConfig(*spec).mesh.transport, config::Transport::kAuto);
}

TEST(SpecTest, ConfigRulesTheSchemaCannotCatch) {
  // tw_config wants the DRAM arena in whole 2 MiB hugepage units.
  auto spec = ParseSpec(json::parse(R"({"tiers":{"dram":{"capacity":"1001Mi"}}})"));
  ASSERT_TRUE(spec.ok());
  SpecCheck check = CheckSpec(*spec);
  EXPECT_EQ(check.problem, SpecProblem::kInvalidConfig);
  EXPECT_NE(check.message.find("dram.capacity"), std::string::npos) << check.message;
}

TEST(MemoryNeedsTest, DramOnlyMath) {
  auto spec = ParseSpec(DramOnly());
  ASSERT_TRUE(spec.ok());
  MemoryNeeds m = ComputeMemoryNeeds(*spec);
  EXPECT_EQ(m.dram_arena, 8 * kGiB);
  EXPECT_EQ(m.index, 8 * kGiB / 4096);  // 2 MiB
  EXPECT_EQ(m.io_buffers, 0u);
  uint64_t margin = 256 * kMiB + (8 * kGiB + 2 * kMiB) / 20;  // 256 MiB + 5 %
  EXPECT_EQ(m.margin, (margin + kMiB - 1) / kMiB * kMiB);
  EXPECT_EQ(m.total % kMiB, 0u);
  EXPECT_EQ(m.total, m.dram_arena + m.index + m.io_buffers + m.margin);
  EXPECT_EQ(m.hugepages, 0u);
}

TEST(MemoryNeedsTest, NvmeAddsIndexAndIoBuffers) {
  auto spec = ParseSpec(NvmeCluster());
  ASSERT_TRUE(spec.ok());
  MemoryNeeds m = ComputeMemoryNeeds(*spec);
  EXPECT_EQ(m.dram_arena, 16 * kGiB);
  EXPECT_EQ(m.index, (16 * kGiB + (uint64_t{1} << 40)) / 4096);
  // 2 × queue depth 64 × 4 MiB stripe × 2 paths + one 64 MiB region per path.
  EXPECT_EQ(m.io_buffers, 2 * 64 * 4 * kMiB * 2 + 2 * 64 * kMiB);
  EXPECT_GT(m.total, m.dram_arena + m.index + m.io_buffers);
}

TEST(MemoryNeedsTest, HugepagesMoveTheArenaOutOfMemory) {
  auto spec = ParseSpec(json::parse(R"({"tiers":{"dram":{"capacity":"3Mi","hugepages":true}}})"));
  ASSERT_TRUE(spec.ok());
  MemoryNeeds m = ComputeMemoryNeeds(*spec);
  EXPECT_EQ(m.dram_arena, 0u);
  EXPECT_EQ(m.hugepages, 4 * kMiB);  // rounded up to 2 MiB pages
}

TEST(MemoryNeedsTest, LimitBelowNeedsIsRefusedAndEnoughIsAccepted) {
  json j = DramOnly();
  j["resources"] = {{"limits", {{"memory", "8Gi"}}}};
  auto low = ParseSpec(j);
  ASSERT_TRUE(low.ok());
  SpecCheck check = CheckSpec(*low);
  EXPECT_EQ(check.problem, SpecProblem::kMemoryLimitTooLow);
  EXPECT_NE(check.message.find("limits.memory"), std::string::npos) << check.message;

  j["resources"]["limits"]["memory"] = "9Gi";
  auto enough = ParseSpec(j);
  ASSERT_TRUE(enough.ok());
  EXPECT_EQ(CheckSpec(*enough).problem, SpecProblem::kNone) << CheckSpec(*enough).message;

  j["resources"]["limits"]["memory"] = 9 * kGiB;  // an integer quantity
  auto as_int = ParseSpec(j);
  ASSERT_TRUE(as_int.ok());
  EXPECT_EQ(CheckSpec(*as_int).problem, SpecProblem::kNone);
}

TEST(SpecTest, MaxUnavailableResolves) {
  EXPECT_EQ(ResolveMaxUnavailable(json(3), 10), 3);
  EXPECT_EQ(ResolveMaxUnavailable(json("25%"), 10), 2);
  EXPECT_EQ(ResolveMaxUnavailable(json("5%"), 10), 1);  // at least one
  EXPECT_EQ(ResolveMaxUnavailable(json(0), 10), 1);
}

TEST(SpecTest, QuantityParsing) {
  EXPECT_EQ(*ParseQuantityBytes(json("80Gi"), "f"), 80 * kGiB);
  EXPECT_EQ(*ParseQuantityBytes(json("1G"), "f"), uint64_t{1000000000});
  EXPECT_EQ(*ParseQuantityBytes(json(4096), "f"), 4096u);
  EXPECT_FALSE(ParseQuantityBytes(json(-1), "f").ok());
  EXPECT_FALSE(ParseQuantityBytes(json(true), "f").ok());
}

}  // namespace
}  // namespace tw::op
