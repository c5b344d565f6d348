// MeshNode end to end in one process: several nodes on 127.0.0.1, each with its own peer
// server, peers file and in-memory chunk source. Announce → home directory → batched Locate
// (one call per home, counted) → fetch from the holder; re-announce at start and on membership
// changes; a dead home is peer_unreachable.
#include "tw/mesh/mesh_node.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "fake_chunk_source.h"
#include "fake_clock.h"

namespace tw::mesh {
namespace {

using testing::FakeChunkSource;
using testing::Pattern;
using testing::TestKey;
using namespace std::chrono_literals;

const Key kNs = TestKey(1000);

struct TestNode {
  std::string name;
  FakeChunkSource source;
  std::vector<FetchSpec> local;  // what LocalChunks lists
  std::mutex mu;
  std::unique_ptr<MeshNode> node;

  void Store(const FetchSpec& spec, size_t bytes) {
    source.Add(spec, {{Pattern(bytes, static_cast<uint8_t>(spec.key.bytes[0]))}, {}});
    {
      std::lock_guard l(mu);
      local.push_back(spec);
    }
    if (node) node->OnStored(spec);
  }
};

class MeshNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tw-mesh-node-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    for (auto& n : nodes_) {
      if (n->node) n->node->Stop();
    }
    std::filesystem::remove_all(dir_);
  }

  TestNode& Add(const std::string& name) {
    auto n = std::make_unique<TestNode>();
    n->name = name;
    nodes_.push_back(std::move(n));
    return *nodes_.back();
  }
  void StartNode(TestNode& n) {
    MeshNode::Options o;
    o.self = n.name;
    o.peers_file = (dir_ / (n.name + ".json")).string();
    o.poll_interval = std::chrono::hours(1);  // the test polls
    o.listen_address = "127.0.0.1";
    o.peer_timeout = 2s;
    o.version = "test";
    TestNode* tn = &n;
    auto node = MeshNode::Start(o, &n.source, [tn](const auto& fn) {
      std::lock_guard l(tn->mu);
      for (const FetchSpec& s : tn->local) {
        if (!fn(s.namespace_digest, s.key)) return;
      }
    });
    ASSERT_TRUE(node.ok()) << node.status().ToString();
    n.node = std::move(*node);
  }
  // Writes every node's peers file naming `members` and makes them all read it.
  void SetMembers(const std::vector<TestNode*>& members) {
    std::string json = "{\"peers\":[";
    for (size_t i = 0; i < members.size(); ++i) {
      json += (i ? "," : "") + std::string("{\"node\":\"") + members[i]->name +
              "\",\"address\":\"127.0.0.1\",\"port\":" + std::to_string(members[i]->node->port()) +
              "}";
    }
    json += "]}";
    for (auto& n : nodes_) {
      if (!n->node) continue;
      const auto path = dir_ / (n->name + ".json");
      std::ofstream(path.string() + ".tmp") << json;
      std::filesystem::rename(path.string() + ".tmp", path);
      ASSERT_TRUE(n->node->PollPeers().ok());
    }
    SyncAll();
  }
  void SyncAll() {
    for (auto& n : nodes_) {
      if (n->node) n->node->Sync();
    }
  }

  std::filesystem::path dir_;
  std::vector<std::unique_ptr<TestNode>> nodes_;
};

TEST_F(MeshNodeTest, ChunkStoredOnOneNodeIsLocatedAndFetchedByAnother) {
  TestNode& a = Add("a");
  TestNode& b = Add("b");
  TestNode& c = Add("c");
  for (TestNode* n : {&a, &b, &c}) StartNode(*n);
  SetMembers({&a, &b, &c});
  const FetchSpec x{kNs, TestKey(1)};
  b.Store(x, 3 << 20);
  SyncAll();

  auto located = a.node->LocateRemote(std::span(&x, 1), Clock::now() + 5s);
  ASSERT_EQ(located[0].miss, MissReason::kNone);
  EXPECT_EQ(located[0].holder, "b");
  std::vector<std::byte> dest(4 << 20);
  std::string holder;
  FetchResult r = a.node->FetchAny(x, dest, Clock::now() + 5s, &holder);
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  EXPECT_EQ(holder, "b");
  ASSERT_EQ(r.bytes, 3u << 20);
  const auto want = Pattern(3 << 20, x.key.bytes[0]);
  EXPECT_EQ(std::memcmp(dest.data(), want.data(), want.size()), 0);

  // Another namespace's directory key: not found (tenancy across nodes).
  const FetchSpec other{TestKey(1001), x.key};
  // (a's cache of directory keys knows x.key under kNs: it must not answer for `other`.)
  EXPECT_EQ(a.node->LocateRemote(std::span(&other, 1), Clock::now() + 5s)[0].miss,
            MissReason::kAbsent);
  EXPECT_EQ(a.node->LocateRemote(std::span(&x, 1), Clock::now() + 5s)[0].holder, "b");
  // The links: a fetched from b; b served a.
  bool saw_b = false;
  for (const LinkStats& l : a.node->Links()) {
    if (l.node != "b") continue;
    saw_b = true;
    EXPECT_EQ(l.fetches, 1u);
    EXPECT_EQ(l.bytes_in, 3u << 20);
    EXPECT_TRUE(l.up);
    EXPECT_EQ(l.kind, TransportKind::kTcp);
  }
  EXPECT_TRUE(saw_b);
  for (const LinkStats& l : b.node->Links()) {
    if (l.node == "a") {
      EXPECT_EQ(l.bytes_out, 3u << 20);
    }
  }

  // A withdraw reaches the home: the chunk is no longer located.
  b.node->OnRemoved(x);
  SyncAll();
  EXPECT_EQ(a.node->LocateRemote(std::span(&x, 1), Clock::now() + 5s)[0].miss, MissReason::kAbsent);
}

TEST_F(MeshNodeTest, LocateSendsOneBatchedCallPerRemoteHome) {
  TestNode& a = Add("a");
  TestNode& b = Add("b");
  TestNode& c = Add("c");
  TestNode& d = Add("d");
  for (TestNode* n : {&a, &b, &c, &d}) StartNode(*n);
  SetMembers({&a, &b, &c, &d});
  std::vector<FetchSpec> specs;
  for (uint64_t i = 0; i < 300; ++i) {
    specs.push_back({kNs, TestKey(i)});
    b.Store(specs.back(), 16);
  }
  SyncAll();
  // The homes other than a itself, by the same placement every node computes.
  std::set<std::string> remote_homes;
  {
    std::vector<Peer> peers;
    for (TestNode* n : {&a, &b, &c, &d}) peers.push_back({n->name, "x", 1, 1.0});
    Placement p(Membership::Create(peers, 1).value());
    for (const FetchSpec& s : specs) {
      const std::string& h = p.Home(DirectoryKey(s.namespace_digest, s.key));
      if (h != "a") remote_homes.insert(h);
    }
  }
  ASSERT_EQ(remote_homes.size(), 3u);
  const uint64_t before = a.node->GetStats().client.calls;
  auto located = a.node->LocateRemote(specs, Clock::now() + 5s);
  EXPECT_EQ(a.node->GetStats().client.calls - before, remote_homes.size());
  for (const auto& l : located) {
    ASSERT_EQ(l.miss, MissReason::kNone);
    EXPECT_EQ(l.holder, "b");
  }
}

TEST_F(MeshNodeTest, RecoveredChunksAreAnnouncedAtStartAndRehomedOnJoin) {
  TestNode& a = Add("a");
  TestNode& b = Add("b");
  std::vector<FetchSpec> specs;
  for (uint64_t i = 0; i < 200; ++i) {
    specs.push_back({kNs, TestKey(5000 + i)});
    b.Store(specs.back(), 8);  // before b's mesh starts: "recovered"
  }
  StartNode(a);
  StartNode(b);
  SetMembers({&a, &b});
  for (const auto& l : a.node->LocateRemote(specs, Clock::now() + 5s)) {
    ASSERT_EQ(l.miss, MissReason::kNone);
  }
  // c joins: the keys whose home is now c are re-announced to it by b.
  TestNode& c = Add("c");
  StartNode(c);
  SetMembers({&a, &b, &c});
  EXPECT_GT(c.node->GetStats().directory.keys, 0u);
  for (const auto& l : a.node->LocateRemote(specs, Clock::now() + 5s)) {
    ASSERT_EQ(l.miss, MissReason::kNone);
    EXPECT_EQ(l.holder, "b");
  }
}

TEST_F(MeshNodeTest, DeadHomeIsPeerUnreachableOthersStillAnswer) {
  TestNode& a = Add("a");
  TestNode& b = Add("b");
  TestNode& c = Add("c");
  for (TestNode* n : {&a, &b, &c}) StartNode(*n);
  SetMembers({&a, &b, &c});
  std::vector<FetchSpec> specs;
  for (uint64_t i = 0; i < 60; ++i) {
    specs.push_back({kNs, TestKey(9000 + i)});
    b.Store(specs.back(), 8);
  }
  SyncAll();
  c.node->Stop();
  std::vector<Peer> peers;
  for (TestNode* n : {&a, &b, &c}) peers.push_back({n->name, "x", 1, 1.0});
  Placement p(Membership::Create(peers, 1).value());
  auto located = a.node->LocateRemote(specs, Clock::now() + 5s);
  size_t unreachable = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const bool home_c = p.Home(DirectoryKey(kNs, specs[i].key)) == "c";
    EXPECT_EQ(located[i].miss, home_c ? MissReason::kPeerUnreachable : MissReason::kNone);
    unreachable += home_c ? 1 : 0;
  }
  EXPECT_GT(unreachable, 0u);
  // The holder itself gone: its fetch is peer_unreachable too, and fails fast afterwards.
  b.node->Stop();
  std::vector<std::byte> dest(64);
  const FetchSpec* on_b = nullptr;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (located[i].miss == MissReason::kNone) on_b = &specs[i];
  }
  ASSERT_NE(on_b, nullptr);
  EXPECT_EQ(a.node->FetchAny(*on_b, dest, Clock::now() + 5s).miss, MissReason::kPeerUnreachable);
  const uint64_t calls = a.node->GetStats().client.calls;
  EXPECT_EQ(a.node->FetchAny(*on_b, dest, Clock::now() + 5s).miss, MissReason::kPeerUnreachable);
  EXPECT_EQ(a.node->GetStats().client.calls, calls);  // cooling off: no call went out
}

}  // namespace
}  // namespace tw::mesh
