#include "tw/common/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tw/common/strings.h"

namespace tw::config {
namespace {

TEST(Config, EmptyDocumentGivesValidDefaults) {
  auto c = ParseYaml("");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(*c, Config{});
  EXPECT_TRUE(Validate(Config{}).ok());
}

TEST(Config, ParsesEveryKindOfField) {
  auto c = ParseYaml(R"(
log_level: debug
socket: {path: /tmp/tw.sock, group: inference, mode: "0640"}
dram: {capacity: 4GiB, hugepages: true, eviction: lru, high_watermark: 0.9, low_watermark: 0.8}
nvme:
  paths:
    - {path: /mnt/nvme0/tw.data, capacity: 100GiB}
    - {path: /mnt/nvme1/tw.data, capacity: 100GiB}
  region_size: 128MiB
  queue_depth: 64
admission: {policy: write_budget, write_budget: 800MB}
default_durability: disk
quotas:
  - {namespace: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef, bytes: 1GiB}
leases: {duration: 2500ms}
shutdown_grace: 30s
workers: 12
tenants:
  - {name: team-a, uids: [1000, 1001], gids: [50]}
mesh: {enabled: true, transport: rdma, port: 7471}
gpu: {cufile: off}
)");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->socket.mode, 0640u);
  EXPECT_EQ(c->socket.group, "inference");
  EXPECT_EQ(c->dram.capacity, 4ULL << 30);
  EXPECT_TRUE(c->dram.hugepages);
  EXPECT_EQ(c->dram.eviction, DramEviction::kLru);
  ASSERT_EQ(c->nvme.paths.size(), 2u);
  EXPECT_EQ(c->nvme.paths[1].path, "/mnt/nvme1/tw.data");
  EXPECT_EQ(c->nvme.paths[1].capacity, 100ULL << 30);
  EXPECT_EQ(c->nvme.region_size, 128ULL << 20);
  EXPECT_EQ(c->nvme.queue_depth, 64u);
  EXPECT_EQ(c->admission.policy, AdmissionPolicy::kWriteBudget);
  EXPECT_EQ(c->admission.write_budget, 800'000'000u);
  EXPECT_EQ(c->default_durability, Durability::kDisk);
  ASSERT_EQ(c->quotas.size(), 1u);
  EXPECT_EQ(c->quotas[0].bytes, 1ULL << 30);
  EXPECT_EQ(c->leases.duration, std::chrono::milliseconds(2500));
  EXPECT_EQ(c->shutdown_grace, std::chrono::seconds(30));
  EXPECT_EQ(c->workers, 12u);
  ASSERT_EQ(c->tenants.size(), 1u);
  EXPECT_EQ(c->tenants[0].uids, (std::vector<uint32_t>{1000, 1001}));
  EXPECT_TRUE(c->mesh.enabled);
  EXPECT_EQ(c->mesh.transport, Transport::kRdma);
  EXPECT_EQ(c->gpu.cufile, CuFileMode::kOff);
}

TEST(Config, MeshTransportAutoParsesAndRenders) {
  auto c = ParseYaml("mesh: {enabled: true, transport: auto}\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->mesh.transport, Transport::kAuto);
  EXPECT_EQ(ToString(Transport::kAuto), "auto");
  EXPECT_FALSE(ParseYaml("mesh: {transport: infiniband}\n").ok());
}

TEST(Config, RenderThenParseGivesTheSameConfig) {
  Config c;
  c.log_level = "warn";
  c.dram.capacity = 6ULL << 30;
  c.nvme.paths = {{"/data/a", 10ULL << 30}, {"/data/b", 0}};
  c.quotas = {{std::string(64, 'a'), 123456789}};
  c.tenants = {{"x", {1, 2}, {}}, {"y", {}, {7}}};
  c.mesh.peers_file = "/etc/peers with space/p.json";
  c.leases.duration = std::chrono::milliseconds(1500);
  c.dram.high_watermark = 0.93;
  c.default_durability = Durability::kDisk;
  std::string yaml = RenderYaml(c);
  auto back = ParseYaml(yaml);
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << yaml;
  EXPECT_EQ(*back, c) << yaml;
  EXPECT_EQ(*ParseYaml(RenderYaml(Config{})), Config{});
}

// Strings are UTF-8 text: a stray byte is refused with the field named, since RenderYaml could
// not write it back (found by the config_yaml fuzz target; its corpus keeps the input as
// regress_non_utf8_string). Non-ASCII text and control characters round-trip.
TEST(Config, StringsMustBeUtf8AndRoundTrip) {
  auto bad = ParseYaml("tenants:\n  - {name: te\xe1m-a, uids: [1000]}\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "tenants[0].name: must be UTF-8 text");
  EXPECT_FALSE(ParseYaml("mesh: {node_name: \"\xc0\xaf\"}\n").ok());  // overlong '/'
  Config c;
  c.mesh.node_name =
      "n\xc3\xb6"
      "de-\xe2\x82\xac-\xf0\x9f\x98\x80";  // ö, €, an emoji
  c.tenants = {{"tab\there\x01", {1}, {}}};
  auto back = ParseYaml(RenderYaml(c));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, c);
}

TEST(Strings, IsValidUtf8) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("\xc3\xb6\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"));
  EXPECT_FALSE(IsValidUtf8("\xe1"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\x80"));              // lone continuation
  EXPECT_FALSE(IsValidUtf8("a\xc3(b"));           // bad continuation
}

struct BadCase {
  const char* yaml;
  const char* field;  // the message must start with this
};

TEST(Config, ErrorsNameTheField) {
  BadCase cases[] = {
      {"dram: {capacity: 12XB}", "dram.capacity: \"12XB\""},
      {"dram: {capacity: -1GiB}", "dram.capacity: \"-1GiB\""},
      {"dram: {capacity: 3MiB}", "dram.capacity:"},
      {"dram: {capacity: 0}", "dram.capacity:"},
      {"dram: {capacity: 2GiB, colour: red}", "dram.colour: unknown field"},
      {"colour: red", "colour: unknown field"},
      {"leases: {duration: 5}", "leases.duration: \"5\""},
      {"leases: {duration: 0s}", "leases.duration:"},
      {"shutdown_grace: soon", "shutdown_grace: \"soon\""},
      {"workers: 5000", "workers:"},
      {"workers: -1", "workers:"},
      {"log_level: loud", "log_level:"},
      {"dram: {eviction: random}", "dram.eviction: \"random\""},
      {"dram: {high_watermark: 1.5}", "dram.high_watermark:"},
      {"dram: {low_watermark: 0.99}", "dram.low_watermark:"},
      {"nvme: {paths: [{path: /a}, {path: /a}]}", "nvme.paths[1].path:"},
      {"nvme: {paths: [{path: /a, capacity: 1MiB}]}", "nvme.paths[0].capacity:"},
      {"nvme: {paths: [{path: /a, size: 1GiB}]}", "nvme.paths[0].size: unknown field"},
      {"nvme: {region_size: 3MiB}", "nvme.region_size:"},
      {"nvme: {queue_depth: 0}", "nvme.queue_depth:"},
      {"nvme: {queue_depth: many}", "nvme.queue_depth:"},
      {"nvme: {paths: oops}", "nvme.paths: must be a list"},
      {"quotas: [{namespace: abc, bytes: 1GiB}]", "quotas[0].namespace:"},
      {"socket: {mode: '999'}", "socket.mode:"},
      {"socket: {path: ''}", "socket.path:"},
      {"admin_socket: {path: /run/tokenwarehouse/twd.sock}", "admin_socket.path:"},
      {"tenants: [{name: a, uids: [1]}, {name: b, uids: [1]}]", "tenants[1].uids:"},
      {"tenants: [{name: a}]", "tenants[0]:"},
      {"mesh: {port: 70000}", "mesh.port:"},
      {"mesh: {tls: {ca: /c.pem, cert: /n.pem}}", "mesh.tls.key:"},
      {"mesh: {tls: {key: /k.pem}}", "mesh.tls.ca:"},
      {"mesh: {tls: {server_name: twd}}", "mesh.tls.server_name:"},
      {"mesh: {cache_remote_hits: sometimes}", "mesh.cache_remote_hits:"},
      {"admission: {policy: write_budget, write_budget: 0}", "admission.write_budget:"},
      {"default_durability: paper", "default_durability:"},
      {"dram: [1, 2]", "dram: must be a mapping"},
      {"- a\n- b", "config: the document must be a mapping"},
      {"dram: {capacity: [", "config: not valid YAML"},
  };
  for (const auto& c : cases) {
    auto r = ParseYaml(c.yaml);
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << c.yaml;
    std::string msg(r.status().message());
    EXPECT_EQ(msg.rfind(c.field, 0), 0u) << c.yaml << " → " << msg;
  }
}

TEST(Config, NoTierIsInvalid) {
  Config c;
  c.dram.capacity = 0;
  EXPECT_FALSE(Validate(c).ok());
  c.nvme.paths = {{"/data/x", 0}};
  EXPECT_TRUE(Validate(c).ok());
}

TEST(Config, LoadFileNamesTheFile) {
  std::string path = testing::TempDir() + "/tw-config-test.yaml";
  {
    std::ofstream out(path);
    out << "dram: {capacity: lots}\n";
  }
  auto c = LoadFile(path);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(path), std::string_view::npos);
  EXPECT_NE(c.status().message().find("dram.capacity"), std::string_view::npos);
  EXPECT_EQ(LoadFile(path + ".missing").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace tw::config
