// The mesh's RDMA path end to end through the Unix socket: real twd in-process whose
// mesh.transport (rdma or auto) opens ports of one shared SoftFabric (RealTwd::UseRdmaFabric)
// instead of a device, with the control messages over the real gRPC peer service. A chunk put
// on one twd is a byte-exact `peer` hit through another, its bytes moved by RDMA READ; a
// stalled holder is `peer_unreachable` within the get's deadline; `auto` uses TCP with a peer
// that has no RDMA; `twctl peers` shows the transport per peer.
#include <cstring>
#include <thread>

#include "mesh_fixture.h"
#include "tw/mesh/rdma/soft_verbs.h"

namespace tw::client {
namespace {

using mesh::rdma::SoftFabric;
using testing::Eventually;
using testing::RealTwd;
using namespace std::chrono_literals;

class MeshRdmaTest : public testing::MeshFixture {
 protected:
  // One twd per entry: {name, mesh.transport, whether it has a (soft) RDMA port}.
  struct Spec {
    std::string name;
    std::string transport;
    bool device;
  };
  void StartNodes(const std::vector<Spec>& specs) {
    std::vector<NodeSpec> nodes;
    for (const Spec& s : specs) {
      nodes.push_back(
          {s.name, "  transport: " + s.transport + "\n", s.device ? &fabric_ : nullptr});
    }
    MeshFixture::StartNodes(nodes);
  }

  bool Located(Client& c, const std::vector<Key>& chain) {
    return Eventually([&] {
      auto l = c.LookupChainOf(c.namespace_digest(0), chain);
      return l.ok() && l->prefix == chain.size();
    });
  }
  StatusOr<PeersInfo> Peers(int node) {
    TW_ASSIGN_OR_RETURN(
        auto admin, AdminClient::Connect(nodes_[static_cast<size_t>(node)]->admin_socket_path()));
    return admin->Peers();
  }

  SoftFabric fabric_;  // outlives the nodes: MeshFixture's TearDown stops them
};

TEST_F(MeshRdmaTest, ChunkPutOnOneTwdIsAByteExactPeerHitThroughAnotherByRdmaRead) {
  StartNodes({{"a", "rdma", true}, {"b", "auto", true}});
  auto a = Connect(0);
  auto b = Connect(1);
  ASSERT_TRUE(a && b);
  const uint64_t size = (1 << 20) + 4099;
  const std::vector<Key> chain = PutChain(*a, 2, size);
  ASSERT_TRUE(Located(*b, chain));

  auto got = b->Get({Whole(*b, chain[1], 1 << 20, 2 << 20)});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)[0].miss, MissReason::kNone);
  EXPECT_EQ((*got)[0].tier, Tier::kPeer);
  EXPECT_EQ((*got)[0].bytes, size);
  EXPECT_EQ((*got)[0].segment_sizes, (std::vector<uint64_t>{size / 4, size - size / 4}));
  EXPECT_TRUE(ValueIs(b->arena_data() + (1 << 20), 1, size));
  // The bytes came by RDMA READs posted by b's one queue pair.
  const auto fb = fabric_.counters("b");
  EXPECT_GE(fb.bytes_read, size);
  EXPECT_EQ(fb.qps_created, 1u);

  // The lineage came with the grant: the chunk is kept in b's DRAM, the next get is local.
  std::memset(b->arena_data() + (1 << 20), 0, size);
  got = b->Get({Whole(*b, chain[1], 1 << 20, 2 << 20)});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)[0].tier, Tier::kDram);
  EXPECT_TRUE(ValueIs(b->arena_data() + (1 << 20), 1, size));

  // `twctl peers` on b: transport rdma, and a reached by RDMA.
  auto peers = Peers(1);
  ASSERT_TRUE(peers.ok()) << peers.status().ToString();
  EXPECT_EQ(peers->transport, "rdma");
  ASSERT_EQ(peers->peers.size(), 1u);
  EXPECT_EQ(peers->peers[0].node, "a");
  EXPECT_EQ(peers->peers[0].transport, "rdma");
  EXPECT_EQ(peers->peers[0].fetches, 1u);
  EXPECT_EQ(peers->peers[0].bytes_in, size);
}

TEST_F(MeshRdmaTest, StalledHolderIsPeerUnreachableWithinTheDeadline) {
  StartNodes({{"a", "rdma", true}, {"b", "rdma", true}});
  auto a = Connect(0);
  auto b = Connect(1);
  ASSERT_TRUE(a && b);
  const std::vector<Key> chain = PutChain(*a, 2, 64 << 10);
  ASSERT_TRUE(Located(*b, chain));
  auto got = b->Get({Whole(*b, chain[0], 0, 1 << 20)});
  ASSERT_TRUE(got.ok());
  ASSERT_EQ((*got)[0].tier, Tier::kPeer);
  // a's port stalls: its READs never complete. b's get ends within its deadline.
  fabric_.SetFault("a", SoftFabric::Fault::kStall);
  const auto start = std::chrono::steady_clock::now();
  got = b->Get({Whole(*b, chain[1], 0, 1 << 20)}, 1000ms);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)[0].miss, MissReason::kPeerUnreachable);
  // twd answers at the deadline at the latest (the fence); the answer's way back is extra.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1000ms + 250ms);
  auto peers = Peers(1);
  ASSERT_TRUE(peers.ok());
  ASSERT_EQ(peers->peers.size(), 1u);
  EXPECT_FALSE(peers->peers[0].up);
  EXPECT_FALSE(peers->peers[0].last_error.empty());
  fabric_.SetFault("a", SoftFabric::Fault::kNone);
}

TEST_F(MeshRdmaTest, AutoUsesTcpWithAPeerWithoutRdma) {
  StartNodes({{"a", "tcp", false}, {"b", "auto", true}});
  auto a = Connect(0);
  auto b = Connect(1);
  ASSERT_TRUE(a && b);
  const uint64_t size = 100 << 10;
  const std::vector<Key> chain = PutChain(*a, 1, size);
  ASSERT_TRUE(Located(*b, chain));
  auto got = b->Get({Whole(*b, chain[0], 0, 1 << 20)});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)[0].tier, Tier::kPeer);
  EXPECT_TRUE(ValueIs(b->arena_data(), 0, size));
  EXPECT_EQ(fabric_.counters("b").reads_posted, 0u);
  auto peers = Peers(1);
  ASSERT_TRUE(peers.ok());
  EXPECT_EQ(peers->transport, "rdma");  // b has RDMA...
  ASSERT_EQ(peers->peers.size(), 1u);
  EXPECT_EQ(peers->peers[0].transport, "tcp");  // ...but not with a
  EXPECT_EQ(peers->peers[0].fetches, 1u);
}

}  // namespace
}  // namespace tw::client
