#include "tw/mesh/membership.h"

#include <gtest/gtest.h>

#include <limits>

#include "tw/mesh/node_name.h"

namespace tw::mesh {
namespace {

TEST(ParsePeersJson, ReadsTheOperatorsShape) {
  // Exactly what operator/src/render.cc writes (RenderPeersJson), node order unsorted here.
  auto peers = ParsePeersJson(R"({"peers":[{"address":"10.0.0.2","node":"b","port":7470},)"
                              R"({"address":"10.0.0.1","node":"a","port":7471}]})");
  ASSERT_TRUE(peers.ok()) << peers.status().ToString();
  ASSERT_EQ(peers->size(), 2u);
  EXPECT_EQ((*peers)[0].node, "b");
  EXPECT_EQ((*peers)[0].address, "10.0.0.2");
  EXPECT_EQ((*peers)[0].port, 7470u);
  EXPECT_EQ((*peers)[0].weight, 1.0);
  auto m = Membership::Create(*peers, 3);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->version(), 3u);
  EXPECT_EQ(m->peers()[0].node, "a");  // sorted by node
  EXPECT_EQ(m->Find("b")->port, 7470u);
  EXPECT_EQ(m->Find("c"), nullptr);
  EXPECT_TRUE(m->Contains("a"));
}

TEST(ParsePeersJson, OptionalWeightAndUnknownFields) {
  auto peers = ParsePeersJson(
      R"({"peers":[{"node":"a","address":"h","port":1,"weight":2.5,"zone":"z1"}],"extra":1})");
  ASSERT_TRUE(peers.ok()) << peers.status().ToString();
  EXPECT_EQ((*peers)[0].weight, 2.5);
}

TEST(ParsePeersJson, EmptyListIsAMeshOfNobody) {
  auto peers = ParsePeersJson(R"({"peers":[]})");
  ASSERT_TRUE(peers.ok());
  EXPECT_TRUE(peers->empty());
  auto m = Membership::Create(*peers, 1);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->empty());
}

void ExpectError(std::string_view json, std::string_view message_part) {
  auto peers = ParsePeersJson(json);
  ASSERT_FALSE(peers.ok()) << json;
  EXPECT_EQ(peers.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(peers.status().message().find(message_part), std::string_view::npos)
      << peers.status().ToString();
}

TEST(ParsePeersJson, ErrorsNameTheField) {
  ExpectError("", "not valid JSON");
  ExpectError(R"({"peers":[)", "not valid JSON");
  ExpectError(R"([1,2])", "top level");
  ExpectError(R"({})", "peers: missing");
  ExpectError(R"({"peers":{}})", "peers: must be an array");
  ExpectError(R"({"peers":[3]})", "peers[0]: not an object");
  ExpectError(R"({"peers":[{"address":"h","port":1}]})", "peers[0].node: missing");
  ExpectError(R"({"peers":[{"node":7,"address":"h","port":1}]})", "peers[0].node: must be a");
  ExpectError(R"({"peers":[{"node":"","address":"h","port":1}]})", "peers[0].node: must not");
  ExpectError(R"({"peers":[{"node":"a","port":1}]})", "peers[0].address: missing");
  ExpectError(R"({"peers":[{"node":"a","address":"","port":1}]})", "peers[0].address: must");
  ExpectError(R"({"peers":[{"node":"a","address":"h"}]})", "peers[0].port: missing");
  ExpectError(R"({"peers":[{"node":"a","address":"h","port":0}]})", "peers[0].port");
  ExpectError(R"({"peers":[{"node":"a","address":"h","port":65536}]})", "peers[0].port");
  ExpectError(R"({"peers":[{"node":"a","address":"h","port":-1}]})", "peers[0].port");
  ExpectError(R"({"peers":[{"node":"a","address":"h","port":"80"}]})", "peers[0].port");
  ExpectError(R"({"peers":[{"node":"a","address":"h","port":8.5}]})", "peers[0].port");
  ExpectError(R"({"peers":[{"node":"a","address":"h","port":1,"weight":0}]})", "peers[0].weight");
  ExpectError(R"({"peers":[{"node":"a","address":"h","port":1,"weight":-1}]})", "peers[0].weight");
  ExpectError(R"({"peers":[{"node":"a","address":"h","port":1,"weight":"2"}]})", "peers[0].weight");
}

TEST(ParsePeersJson, DuplicateNodesNameBothEntries) {
  ExpectError(R"({"peers":[{"node":"a","address":"h","port":1},)"
              R"({"node":"b","address":"h","port":1},{"node":"a","address":"i","port":2}]})",
              "peers[2].node: duplicate node \"a\" (also peers[0])");
}

TEST(Membership, CreateChecksToo) {
  EXPECT_FALSE(Membership::Create({{"a", "h", 0, 1.0}}, 1).ok());
  EXPECT_FALSE(Membership::Create({{"a", "h", 1, 1.0}, {"a", "h", 2, 1.0}}, 1).ok());
  auto inf = Membership::Create({{"a", "h", 1, std::numeric_limits<double>::infinity()}}, 1);
  ASSERT_FALSE(inf.ok());
  EXPECT_NE(inf.status().message().find("peers[0].weight"), std::string_view::npos);
}

NodeNameSources Sources(std::optional<std::string> env, StatusOr<std::string> host) {
  NodeNameSources s;
  s.getenv = [env](const char* name) -> std::optional<std::string> {
    if (std::string_view(name) != "TW_NODE_NAME") return std::nullopt;
    return env;
  };
  s.hostname = [host] { return host; };
  return s;
}

TEST(ResolveNodeName, ConfigThenEnvironmentThenHostname) {
  EXPECT_EQ(*ResolveNodeName("cfg", Sources("env", std::string("host"))), "cfg");
  EXPECT_EQ(*ResolveNodeName("", Sources("env", std::string("host"))), "env");
  EXPECT_EQ(*ResolveNodeName("", Sources("", std::string("host"))), "host");
  EXPECT_EQ(*ResolveNodeName("", Sources(std::nullopt, std::string("host"))), "host");
}

TEST(ResolveNodeName, NothingSetIsAnError) {
  auto empty = ResolveNodeName("", Sources(std::nullopt, std::string("")));
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(empty.status().message().find("TW_NODE_NAME"), std::string_view::npos);
  auto failed = ResolveNodeName("", Sources(std::nullopt, UnavailableError("no uts")));
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("no uts"), std::string_view::npos);
}

TEST(ResolveNodeName, SystemSourcesGiveSomeName) {
  auto name = ResolveNodeName("");
  ASSERT_TRUE(name.ok()) << name.status().ToString();
  EXPECT_FALSE(name->empty());
}

}  // namespace
}  // namespace tw::mesh
