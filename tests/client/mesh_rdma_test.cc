// The mesh's RDMA path end to end through the Unix socket: real twd in-process whose
// mesh.transport (rdma or auto) opens ports of one shared SoftFabric (RealTwd::UseRdmaFabric)
// instead of a device, with the control messages over the real gRPC peer service. A chunk put
// on one twd is a byte-exact `peer` hit through another, its bytes moved by RDMA READ; a
// stalled holder is `peer_unreachable` within the get's deadline; `auto` uses TCP with a peer
// that has no RDMA; `twctl peers` shows the transport per peer.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "real_twd.h"
#include "tw/client/admin_client.h"
#include "tw/client/client.h"
#include "tw/mesh/rdma/soft_verbs.h"

namespace tw::client {
namespace {

using testing::RealTwd;
using namespace std::chrono_literals;
using mesh::rdma::SoftFabric;

uint32_t FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Waits (bounded) until `done` holds: announces travel asynchronously, in batches.
template <typename F>
bool Eventually(F done) {
  const auto until = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return done();
}

class MeshRdmaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("twclient-mesh-rdma-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    nodes_.clear();
    std::filesystem::remove_all(dir_);
  }

  // One twd per entry: {name, mesh.transport, whether it has a (soft) RDMA port}.
  struct Spec {
    std::string name;
    std::string transport;
    bool device;
  };
  void StartNodes(const std::vector<Spec>& specs) {
    std::vector<uint32_t> ports;
    std::string peers = "{\"peers\":[";
    for (size_t i = 0; i < specs.size(); ++i) {
      ports.push_back(FreePort());
      peers += (i ? "," : "") + std::string("{\"node\":\"") + specs[i].name +
               "\",\"address\":\"127.0.0.1\",\"port\":" + std::to_string(ports[i]) + "}";
    }
    peers += "]}";
    for (size_t i = 0; i < specs.size(); ++i) {
      const std::string peers_file = (dir_ / (specs[i].name + "-peers.json")).string();
      std::ofstream(peers_file) << peers;
      const std::string yaml =
          "mesh:\n  enabled: true\n  node_name: " + specs[i].name +
          "\n  transport: " + specs[i].transport +
          "\n  listen_address: 127.0.0.1\n  port: " + std::to_string(ports[i]) +
          "\n  peers_file: " + peers_file + "\n  peer_timeout: 2s\n";
      nodes_.push_back(std::make_unique<RealTwd>());
      if (specs[i].device) nodes_.back()->UseRdmaFabric(&fabric_);
      Status st = nodes_.back()->Start(yaml);
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
  }

  std::unique_ptr<Client> Connect(int node) {
    ClientOptions o;
    o.socket_path = nodes_[static_cast<size_t>(node)]->socket_path();
    o.arena_size = 8 << 20;
    Namespace ns;
    ns.model = "m";
    ns.kv_dtype = "bf16";
    ns.parallel = "tp=0/1";
    ns.chunk_tokens = "4";
    o.namespaces = {ns};
    o.timeout = 5000ms;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Puts a chain of `n` chunks of `size` bytes (two segments) through `c`; returns the keys.
  std::vector<Key> PutChain(Client& c, size_t n, uint64_t size) {
    std::vector<Key> chain;
    Key parent = c.namespace_digest(0);
    for (size_t i = 0; i < n; ++i) {
      uint8_t* a = c.arena_data();
      for (uint64_t b = 0; b < size; ++b) a[b] = static_cast<uint8_t>(b * 31 + i * 7 + (b >> 8));
      PutItem p;
      p.ref.namespace_digest = c.namespace_digest(0);
      p.parent = parent;
      p.tokens = {uint32_t(i * 4), uint32_t(i * 4 + 1), uint32_t(i * 4 + 2), uint32_t(i * 4 + 3)};
      p.ref.key = ChunkKey(parent, {}, p.tokens);
      p.segment_sizes = {size / 4, size - size / 4};
      p.ranges = {ScatterRange{0, 0, size / 4, 0}, ScatterRange{1, 0, size - size / 4, size / 4}};
      auto put = c.Put({p});
      EXPECT_TRUE(put.ok() && (*put)[0].result == PutResult::kStored);
      chain.push_back(p.ref.key);
      parent = p.ref.key;
    }
    return chain;
  }
  static bool ValueIs(const uint8_t* got, size_t i, uint64_t size) {
    for (uint64_t b = 0; b < size; ++b) {
      if (got[b] != static_cast<uint8_t>(b * 31 + i * 7 + (b >> 8))) return false;
    }
    return true;
  }
  static GetItem Whole(Client& c, const Key& key, uint64_t at, uint64_t len) {
    GetItem g;
    g.ref = {key, c.namespace_digest(0)};
    g.arena_offset = at;
    g.arena_length = len;
    return g;
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

  SoftFabric fabric_;  // outlives the nodes (declared first)
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<RealTwd>> nodes_;
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
