// The mesh end to end through the Unix socket: two or three real twd in-process (daemon, core,
// socket server, real store on temporary directories, the peer service on 127.0.0.1), each
// with its own port and peers file, driven by libtwclient. A chunk put on one twd is a
// byte-exact `peer` hit through another; the second get is local (mesh.cache_remote_hits); a
// holder that stops is `peer_unreachable` within the get's deadline while the asker keeps
// serving; namespaces stay apart across nodes.
#include <cstring>
#include <thread>

#include "mesh_fixture.h"

namespace tw::client {
namespace {

using testing::Eventually;
using testing::RealTwd;
using testing::TestNamespace;
using namespace std::chrono_literals;

class MeshTest : public testing::MeshFixture {
 protected:
  // Starts `n` twd named a, b, c..., each with its own copy of the peers file; `mesh_extra`
  // adds lines to every node's mesh section.
  void StartNodes(int n, const std::string& mesh_extra = "") {
    std::vector<NodeSpec> specs;
    for (int i = 0; i < n; ++i) specs.push_back({Name(i), mesh_extra});
    MeshFixture::StartNodes(specs);
  }
  static std::string Name(int i) { return std::string(1, static_cast<char>('a' + i)); }
};

TEST_F(MeshTest, ChunkPutOnOneTwdIsAByteExactPeerHitThroughAnother) {
  StartNodes(2);
  auto a = Connect(0);
  auto b = Connect(1);
  ASSERT_TRUE(a && b);
  const uint64_t size = 96 << 10;
  const std::vector<Key> chain = PutChain(*a, 3, size);

  // The lookup through b finds the whole chain on a's node, as tier peer.
  ASSERT_TRUE(Eventually([&] {
    auto l = b->LookupChainOf(b->namespace_digest(0), chain);
    return l.ok() && l->prefix == 3;
  }));
  auto l = b->LookupChainOf(b->namespace_digest(0), chain);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->miss, MissReason::kNone);
  EXPECT_EQ(l->tiers[0], (std::vector<Tier>{Tier::kPeer, Tier::kPeer, Tier::kPeer}));

  // Whole value, straight into b's arena.
  auto got = b->Get({Whole(*b, chain[0], 1 << 20, 2 << 20)});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)[0].miss, MissReason::kNone);
  EXPECT_EQ((*got)[0].tier, Tier::kPeer);
  EXPECT_EQ((*got)[0].bytes, size);
  EXPECT_EQ((*got)[0].segment_sizes, (std::vector<uint64_t>{size / 4, size - size / 4}));
  EXPECT_TRUE(ValueIs(b->arena_data() + (1 << 20), 0, size));

  // Kept in b's DRAM (mesh.cache_remote_hits): the next get is local.
  std::memset(b->arena_data() + (1 << 20), 0, size);
  got = b->Get({Whole(*b, chain[0], 1 << 20, 2 << 20)});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)[0].tier, Tier::kDram);
  EXPECT_TRUE(ValueIs(b->arena_data() + (1 << 20), 0, size));
  l = b->LookupChainOf(b->namespace_digest(0), chain);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->tiers[0], (std::vector<Tier>{Tier::kDram, Tier::kPeer, Tier::kPeer}));

  // The scatter form: ranges of both segments of chunk 2.
  GetItem s;
  s.ref = {chain[2], b->namespace_digest(0)};
  s.ranges = {ScatterRange{1, 10, 1000, 3 << 20}, ScatterRange{0, 0, 16, 4 << 20}};
  got = b->Get({s});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)[0].tier, Tier::kPeer);
  EXPECT_EQ((*got)[0].bytes, 1016u);
  std::vector<uint8_t> want(size);
  for (uint64_t i = 0; i < size; ++i) want[i] = static_cast<uint8_t>(i * 31 + 2 * 7 + (i >> 8));
  EXPECT_EQ(std::memcmp(b->arena_data() + (3 << 20), want.data() + size / 4 + 10, 1000), 0);
  EXPECT_EQ(std::memcmp(b->arena_data() + (4 << 20), want.data(), 16), 0);
  // A range outside the remote value is the same error as locally.
  s.ranges = {ScatterRange{0, 0, size, 3 << 20}};
  EXPECT_FALSE(b->Get({s}).ok());

  // `twctl peers` on b: a is up, with the two fetches and their bytes.
  auto admin = AdminClient::Connect(nodes_[1]->admin_socket_path());
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  auto peers = (*admin)->Peers();
  ASSERT_TRUE(peers.ok()) << peers.status().ToString();
  EXPECT_TRUE(peers->enabled);
  EXPECT_EQ(peers->node, "b");
  EXPECT_EQ(peers->transport, "tcp");
  ASSERT_EQ(peers->peers.size(), 1u);
  EXPECT_EQ(peers->peers[0].node, "a");
  EXPECT_TRUE(peers->peers[0].up);
  EXPECT_EQ(peers->peers[0].fetches, 2u);
  EXPECT_EQ(peers->peers[0].bytes_in, 2 * size);
  EXPECT_NE(PeersInfoToJson(*peers).find("\"node\":\"a\""), std::string::npos);
}

TEST_F(MeshTest, WithoutCachingEveryGetIsFetchedStraightIntoTheArena) {
  StartNodes(2, "  cache_remote_hits: false\n");
  auto a = Connect(0);
  auto b = Connect(1);
  ASSERT_TRUE(a && b);
  const uint64_t size = 200 << 10;
  const std::vector<Key> chain = PutChain(*a, 1, size);
  ASSERT_TRUE(Eventually([&] {
    auto l = b->LookupChainOf(b->namespace_digest(0), chain);
    return l.ok() && l->prefix == 1;
  }));
  for (int round = 0; round < 2; ++round) {
    std::memset(b->arena_data() + (2 << 20), 0, size);
    auto got = b->Get({Whole(*b, chain[0], 2 << 20, size)});
    ASSERT_TRUE(got.ok());
    EXPECT_EQ((*got)[0].tier, Tier::kPeer) << "round " << round;
    EXPECT_TRUE(ValueIs(b->arena_data() + (2 << 20), 0, size));
  }
  // A whole-value destination too small for the remote value is refused like a local one.
  EXPECT_FALSE(b->Get({Whole(*b, chain[0], 2 << 20, size - 1)}).ok());
}

// Tensor-parallel ranks: rank 0's chain is stored here, rank 1's on the other node. The lookup
// keeps rank 0's local chunks and asks only for rank 1's.
TEST_F(MeshTest, ChainsOfOneItemMixLocalAndPeerChunks) {
  StartNodes(2);
  const Namespace rank0 = TestNamespace("m", "tp=0/2"), rank1 = TestNamespace("m", "tp=1/2");
  auto a1 = Connect(0, rank1);
  auto b0 = Connect(1, rank0);
  auto b = Connect(1, rank0, {rank1});
  ASSERT_TRUE(a1 && b0 && b);
  const std::vector<Key> chain1 = PutChain(*a1, 3, 4096);
  const std::vector<Key> chain0 = PutChain(*b0, 3, 4096);
  const std::vector<std::vector<LookupChain>> item = {
      {LookupChain{b->namespace_digest(0), chain0}, LookupChain{b->namespace_digest(1), chain1}}};
  ASSERT_TRUE(Eventually([&] {
    auto l = b->Lookup(item, false);
    return l.ok() && (*l)[0].prefix == 3;
  }));
  auto l = b->Lookup(item, false);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ((*l)[0].tiers[0], (std::vector<Tier>{Tier::kDram, Tier::kDram, Tier::kDram}));
  EXPECT_EQ((*l)[0].tiers[1], (std::vector<Tier>{Tier::kPeer, Tier::kPeer, Tier::kPeer}));
}

TEST_F(MeshTest, ThreeNodesEachServesTheOthersChunks) {
  StartNodes(3);
  std::vector<std::unique_ptr<Client>> c;
  for (int i = 0; i < 3; ++i) c.push_back(Connect(i));
  for (auto& x : c) ASSERT_NE(x, nullptr);
  const uint64_t size = 4096;
  const std::vector<Key> chain = PutChain(*c[0], 8, size);
  for (int reader : {1, 2}) {
    ASSERT_TRUE(Eventually([&] {
      auto l = c[reader]->LookupChainOf(c[reader]->namespace_digest(0), chain);
      return l.ok() && l->prefix == chain.size();
    }));
    for (size_t i = 0; i < chain.size(); ++i) {
      auto got = c[reader]->Get({Whole(*c[reader], chain[i], 0, 1 << 20)});
      ASSERT_TRUE(got.ok());
      ASSERT_EQ((*got)[0].miss, MissReason::kNone) << "reader " << reader << " chunk " << i;
      EXPECT_TRUE(ValueIs(c[reader]->arena_data(), i, size));
    }
  }
}

TEST_F(MeshTest, StoppedHolderIsPeerUnreachableWithinTheDeadlineAndTheAskerServesOn) {
  StartNodes(2);
  auto a = Connect(0);
  auto b = Connect(1);
  ASSERT_TRUE(a && b);
  const std::vector<Key> chain = PutChain(*a, 2, 8192);
  ASSERT_TRUE(Eventually([&] {
    auto l = b->LookupChainOf(b->namespace_digest(0), chain);
    return l.ok() && l->prefix == 2;
  }));
  a.reset();
  nodes_[0]->Shutdown();
  const auto start = std::chrono::steady_clock::now();
  auto got = b->Get({Whole(*b, chain[1], 0, 1 << 20)}, 1500ms);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)[0].miss, MissReason::kPeerUnreachable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
  // b keeps serving its own chunks.
  const std::vector<Key> mine = PutChain(*b, 1, 4096);
  got = b->Get({Whole(*b, mine[0], 1 << 20, 1 << 20)});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)[0].tier, Tier::kDram);
  // b's own chunk has a's first key (same namespace, same tokens): the chain's first chunk is
  // local now. While a cools off, the lookup does not promise its second one (once the
  // cool-off ends a probe may go out first: then it can be promised again, not asserted).
  auto l = b->LookupChainOf(b->namespace_digest(0), chain);
  ASSERT_TRUE(l.ok());
  ASSERT_GE(l->prefix, 1u);
  EXPECT_EQ(l->tiers[0][0], Tier::kDram);
  if (l->prefix == 1) {
    EXPECT_EQ(l->miss, MissReason::kPeerUnreachable);
  }
}

TEST_F(MeshTest, NamespacesStayApartAcrossNodes) {
  StartNodes(2);
  auto a = Connect(0);
  auto b = Connect(1, TestNamespace("other-model"));
  auto b_same = Connect(1);
  ASSERT_TRUE(a && b && b_same);
  const std::vector<Key> chain = PutChain(*a, 1, 4096);
  ASSERT_TRUE(Eventually([&] {
    auto l = b_same->LookupChainOf(b_same->namespace_digest(0), chain);
    return l.ok() && l->prefix == 1;
  }));
  // The same key asked under another namespace: neither located nor served.
  auto l = b->LookupChainOf(b->namespace_digest(0), chain);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->prefix, 0u);
  auto got = b->Get({Whole(*b, chain[0], 0, 1 << 20)});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)[0].miss, MissReason::kAbsent);
}

}  // namespace
}  // namespace tw::client
