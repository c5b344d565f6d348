// The RDMA transport on the real peer service: MeshNodes in one process whose transports are
// RdmaTransports over one shared SoftFabric, with the control messages (Connect,
// RequestConnect, PrepareRead, Release) carried by gRPC inside the Connect rpc. A chunk stored
// on one node is a byte-exact hit on another, moved by RDMA READ; a stalled or dead holder is
// peer_unreachable within the deadline; `auto` uses TCP with a peer without RDMA; `rdma`
// without a device fails to start.
#include "tw/mesh/rdma/mesh_rdma.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>

#include "fake_chunk_source.h"
#include "fake_clock.h"
#include "tw/mesh/directory.h"
#include "tw/mesh/mesh_node.h"
#include "tw/mesh/peer_client.h"
#include "tw/mesh/peer_server.h"
#include "tw/mesh/rdma/soft_verbs.h"

namespace tw::mesh::rdma {
namespace {

using mesh::testing::FakeChunkSource;
using mesh::testing::Pattern;
using mesh::testing::TestKey;
using namespace std::chrono_literals;

const Key kNs = TestKey(2000);

struct Node {
  std::string name;
  FakeChunkSource source;
  std::vector<FetchSpec> local;
  std::mutex mu;
  std::unique_ptr<MeshNode> node;
};

class MeshRdmaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tw-mesh-rdma-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    for (auto& n : nodes_) {
      if (n->node) n->node->Stop();
    }
    nodes_.clear();
    std::filesystem::remove_all(dir_);
  }

  MeshNode::Options Opts(const std::string& name) {
    MeshNode::Options o;
    o.self = name;
    o.peers_file = (dir_ / (name + ".json")).string();
    o.poll_interval = std::chrono::hours(1);
    o.listen_address = "127.0.0.1";
    o.peer_timeout = 2s;
    o.version = "test";
    return o;
  }
  // mode tcp/rdma/auto; `device`: whether the node opens a SoftFabric port.
  StatusOr<Node*> Start(const std::string& name, TransportMode mode, bool device) {
    auto n = std::make_unique<Node>();
    n->name = name;
    MeshNode::Options o = Opts(name);
    MeshTransportOptions t;
    t.mode = mode;
    t.rdma.slice_bytes = 256 << 10;
    t.rdma.staging_bytes = 8 << 20;
    t.rdma.holder_staging_bytes = 16 << 20;
    if (device) {
      t.open_verbs = [this, name]() -> StatusOr<std::unique_ptr<Verbs>> {
        return fabric_.OpenDevice(name);
      };
    } else {
      t.open_verbs = []() -> StatusOr<std::unique_ptr<Verbs>> {
        return NotFoundError("no RDMA device found");
      };
    }
    o.make_transport = MakeMeshTransportFactory(std::move(t));
    Node* raw = n.get();
    TW_ASSIGN_OR_RETURN(n->node, MeshNode::Start(o, &n->source, [raw](const auto& fn) {
                          std::lock_guard l(raw->mu);
                          for (const FetchSpec& s : raw->local) {
                            if (!fn(s.namespace_digest, s.key)) return;
                          }
                        }));
    nodes_.push_back(std::move(n));
    return raw;
  }
  void SetMembers() {
    std::string json = "{\"peers\":[";
    for (size_t i = 0; i < nodes_.size(); ++i) {
      json += (i ? "," : "") + std::string("{\"node\":\"") + nodes_[i]->name +
              "\",\"address\":\"127.0.0.1\",\"port\":" + std::to_string(nodes_[i]->node->port()) +
              "}";
    }
    json += "]}";
    for (auto& n : nodes_) {
      const auto path = dir_ / (n->name + ".json");
      std::ofstream(path.string() + ".tmp") << json;
      std::filesystem::rename(path.string() + ".tmp", path);
      ASSERT_TRUE(n->node->PollPeers().ok());
    }
    for (auto& n : nodes_) n->node->Sync();
  }
  static void Store(Node& n, const FetchSpec& spec, size_t bytes) {
    n.source.Add(spec, {{Pattern(bytes / 2, spec.key.bytes[0]),
                         Pattern(bytes - bytes / 2, spec.key.bytes[0] + 1)},
                        {}});
    {
      std::lock_guard l(n.mu);
      n.local.push_back(spec);
    }
    n.node->OnStored(spec);
    n.node->Sync();
  }
  static std::vector<std::byte> Value(const FetchSpec& spec, size_t bytes) {
    auto v = Pattern(bytes / 2, spec.key.bytes[0]);
    auto w = Pattern(bytes - bytes / 2, spec.key.bytes[0] + 1);
    v.insert(v.end(), w.begin(), w.end());
    return v;
  }
  static std::optional<LinkStats> LinkTo(MeshNode& n, const std::string& peer) {
    for (const LinkStats& l : n.Links()) {
      if (l.node == peer) return l;
    }
    return std::nullopt;
  }

  SoftFabric fabric_;
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(MeshRdmaTest, ChunkOnOneNodeIsAByteExactHitOnAnotherByRdmaRead) {
  auto a = Start("a", TransportMode::kRdma, true);
  auto b = Start("b", TransportMode::kAuto, true);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->node->transport_kind(), TransportKind::kRdma);
  SetMembers();
  const size_t size = (3 << 20) + 123;
  for (int i = 1; i <= 3; ++i) {
    const FetchSpec x{kNs, TestKey(static_cast<uint64_t>(i))};
    Store(**b, x, size);
    std::vector<std::byte> dest(4 << 20);
    std::string holder;
    FetchResult r = (*a)->node->FetchAny(x, dest, Clock::now() + 5s, &holder);
    ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
    EXPECT_EQ(holder, "b");
    ASSERT_EQ(r.bytes, size);
    EXPECT_EQ(r.segment_sizes, (std::vector<uint64_t>{size / 2, size - size / 2}));
    const auto want = Value(x, size);
    EXPECT_EQ(std::memcmp(dest.data(), want.data(), size), 0) << "chunk " << i;
  }
  // Moved by RDMA READs on a's one queue pair, not by the TCP stream.
  const auto fa = fabric_.counters("a");
  EXPECT_GE(fa.bytes_read, 3 * size);
  EXPECT_GE(fa.reads_executed, 3u * ((size + (256 << 10) - 1) / (256 << 10)));
  EXPECT_EQ(fa.qps_created, 1u);
  EXPECT_EQ((*b)->source.reads(), 3);  // staged once per fetch by the holder
  auto link = LinkTo(*(*a)->node, "b");
  ASSERT_TRUE(link.has_value());
  EXPECT_EQ(link->kind, TransportKind::kRdma);
  EXPECT_EQ(link->fetches, 3u);
  EXPECT_EQ(link->bytes_in, 3 * size);
  EXPECT_TRUE(link->up);

  // Tenancy: under another namespace the holder has nothing.
  const FetchSpec other{TestKey(2001), TestKey(1)};
  std::vector<std::byte> dest(4 << 20);
  FetchResult miss = (*a)->node->Fetch("b", other, dest, Clock::now() + 5s);
  EXPECT_EQ(miss.miss, MissReason::kAbsent) << miss.error.ToString();
}

TEST_F(MeshRdmaTest, StalledHolderIsPeerUnreachableWithinTheDeadline) {
  auto a = Start("a", TransportMode::kAuto, true);
  auto b = Start("b", TransportMode::kAuto, true);
  ASSERT_TRUE(a.ok() && b.ok());
  SetMembers();
  const FetchSpec x{kNs, TestKey(7)};
  Store(**b, x, 2 << 20);
  std::vector<std::byte> dest(2 << 20);
  // First a hit (the pair is connected), then the holder's port stalls: READs never complete.
  ASSERT_EQ((*a)->node->FetchAny(x, dest, Clock::now() + 5s).miss, MissReason::kNone);
  fabric_.SetFault("b", SoftFabric::Fault::kStall);
  const auto start = Clock::now();
  const auto deadline = start + 300ms;
  FetchResult r = (*a)->node->Fetch("b", x, dest, deadline);
  const auto took = Clock::now() - start;
  EXPECT_EQ(r.miss, MissReason::kPeerUnreachable) << r.error.ToString();
  EXPECT_LT(took, 300ms + 150ms);
  auto link = LinkTo(*(*a)->node, "b");
  ASSERT_TRUE(link.has_value());
  EXPECT_EQ(link->kind, TransportKind::kRdma);
  EXPECT_FALSE(link->up);
  EXPECT_GE(link->failures, 1u);
  fabric_.SetFault("b", SoftFabric::Fault::kNone);
}

TEST_F(MeshRdmaTest, KilledHolderIsPeerUnreachableWithinTheDeadline) {
  auto a = Start("a", TransportMode::kAuto, true);
  auto b = Start("b", TransportMode::kAuto, true);
  ASSERT_TRUE(a.ok() && b.ok());
  SetMembers();
  const FetchSpec x{kNs, TestKey(8)};
  Store(**b, x, 1 << 20);
  std::vector<std::byte> dest(1 << 20);
  ASSERT_EQ((*a)->node->FetchAny(x, dest, Clock::now() + 5s).miss, MissReason::kNone);
  // The holder's process dies: its peer service goes away and its port is gone.
  (*b)->node->Stop();
  fabric_.SetFault("b", SoftFabric::Fault::kDead);
  const auto start = Clock::now();
  FetchResult r = (*a)->node->Fetch("b", x, dest, start + 500ms);
  EXPECT_EQ(r.miss, MissReason::kPeerUnreachable) << r.error.ToString();
  EXPECT_LT(Clock::now() - start, 500ms + 150ms);
}

TEST_F(MeshRdmaTest, AutoUsesTcpWithAPeerWithoutRdma) {
  auto a = Start("a", TransportMode::kAuto, true);
  auto c = Start("c", TransportMode::kAuto, false);  // no device: auto falls back to TCP
  ASSERT_TRUE(a.ok() && c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->node->transport_kind(), TransportKind::kTcp);
  SetMembers();
  const FetchSpec x{kNs, TestKey(9)};
  Store(**c, x, (1 << 20) + 5);
  std::vector<std::byte> dest(2 << 20);
  FetchResult r = (*a)->node->FetchAny(x, dest, Clock::now() + 5s);
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  const auto want = Value(x, (1 << 20) + 5);
  EXPECT_EQ(std::memcmp(dest.data(), want.data(), want.size()), 0);
  EXPECT_EQ(fabric_.counters("a").reads_posted, 0u);
  auto link = LinkTo(*(*a)->node, "c");
  ASSERT_TRUE(link.has_value());
  EXPECT_EQ(link->kind, TransportKind::kTcp);
  EXPECT_EQ(link->fetches, 1u);
  // And c, fetching from a (which has RDMA), uses TCP too.
  const FetchSpec y{kNs, TestKey(10)};
  Store(**a, y, 4096);
  r = (*c)->node->FetchAny(y, dest, Clock::now() + 5s);
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  auto back = LinkTo(*(*c)->node, "a");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->kind, TransportKind::kTcp);
}

TEST_F(MeshRdmaTest, RdmaModeWithAPeerWithoutRdmaIsAMissNamingWhy) {
  auto a = Start("a", TransportMode::kRdma, true);
  auto c = Start("c", TransportMode::kTcp, false);
  ASSERT_TRUE(a.ok() && c.ok());
  SetMembers();
  const FetchSpec x{kNs, TestKey(11)};
  Store(**c, x, 4096);
  std::vector<std::byte> dest(4096);
  FetchResult r = (*a)->node->FetchAny(x, dest, Clock::now() + 5s);
  EXPECT_EQ(r.miss, MissReason::kPeerUnreachable);
  EXPECT_NE(r.error.ToString().find("no RDMA"), std::string::npos) << r.error.ToString();
}

TEST_F(MeshRdmaTest, RdmaModeWithoutADeviceFailsToStart) {
  auto a = Start("a", TransportMode::kRdma, false);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().ToString().find("no RDMA device"), std::string::npos)
      << a.status().ToString();
}

// A handler that records what reaches it; HandleRelease blocks until unblocked.
class RecordingHandler final : public RdmaControlHandler {
 public:
  StatusOr<QpEndpoint> HandleConnect(const ConnectRequest& request) override {
    std::lock_guard l(mu_);
    connect_from_ = request.from_node;
    QpEndpoint e = request.endpoint;
    e.qpn += 1;
    return e;
  }
  StatusOr<RequestConnectReply> HandleRequestConnect(const std::string&, uint32_t failed_qpn,
                                                     Deadline) override {
    return RequestConnectReply{failed_qpn + 1, 7};
  }
  ReadGrant HandlePrepareRead(const std::string& from_node, const FetchSpec& spec,
                              Deadline) override {
    std::lock_guard l(mu_);
    prepared_ = spec;
    prepare_from_ = from_node;
    ReadGrant g;
    if (spec.namespace_digest != kNs) {
      g.miss = MissReason::kAbsent;
      g.error = NotFoundError("not under that namespace");
      return g;
    }
    g.remote_addr = 0x1000;
    g.rkey = 42;
    g.length = 10;
    g.segment_sizes = {4, 6};
    g.lineage = ChunkLineage{TestKey(5), "x", {1, 2}};
    g.token = 99;
    g.holder_qpn = 300;
    g.ttl = 3s;
    return g;
  }
  void HandleRelease(uint64_t token) override {
    std::unique_lock l(mu_);
    released_.push_back(token);
    cv_.notify_all();
    cv_.wait(l, [&] { return !block_; });
  }
  void Unblock() {
    std::lock_guard l(mu_);
    block_ = false;
    cv_.notify_all();
  }
  void WaitReleased(size_t n) {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return released_.size() >= n; });
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::string connect_from_, prepare_from_;
  FetchSpec prepared_;
  std::vector<uint64_t> released_;
  bool block_ = true;
};

TEST(GrpcRdmaControlTest, MessagesTravelTypedInsideConnect) {
  RecordingHandler handler;
  Directory directory(Directory::Options{});
  FakeChunkSource source;
  PeerServer::Options so;
  so.node = "h";
  so.listen_address = "127.0.0.1";
  PeerServer::Handlers hs;
  hs.directory = &directory;
  hs.source = &source;
  hs.connect = MakeRdmaConnectHandler(&handler);
  auto server = PeerServer::Start(so, hs);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  PeerClient::Options co;
  co.self = "r";
  co.call_timeout = 2s;
  PeerClient client(co);
  const Peer h{"h", "127.0.0.1", (*server)->port()};

  // Capabilities: an empty Connect.
  auto caps = client.Connect(h, {"tcp", "rdma"}, "", Clock::now() + 2s);
  ASSERT_TRUE(caps.ok());
  EXPECT_EQ(caps->transports, (std::vector<std::string>{"tcp", "rdma"}));

  GrpcRdmaControl::Options go;
  go.release_queue = 2;
  go.release_timeout = 10s;  // the holder sits on the first Release until unblocked
  GrpcRdmaControl control(&client, go);
  QpEndpoint mine{.qpn = 17, .lid = 3, .gid = {}, .psn = 0x1234, .mtu = 4096};
  mine.gid[15] = 9;
  auto theirs = control.Connect(h, ConnectRequest{"r", mine}, Clock::now() + 2s);
  ASSERT_TRUE(theirs.ok()) << theirs.status().ToString();
  EXPECT_EQ(theirs->qpn, 18u);
  EXPECT_EQ(theirs->gid, mine.gid);
  EXPECT_EQ(theirs->mtu, 4096u);
  EXPECT_EQ(handler.connect_from_, "r");
  auto rc = control.RequestConnect(h, "r", 41, Clock::now() + 2s);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(rc->holder_qpn, 42u);
  EXPECT_EQ(rc->requester_qpn, 7u);

  // PrepareRead carries the namespace: the holder serves only under it.
  const FetchSpec spec{kNs, TestKey(3)};
  auto g = control.PrepareRead(h, "r", spec, Clock::now() + 2s);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(handler.prepared_, spec);
  EXPECT_EQ(handler.prepare_from_, "r");
  EXPECT_EQ(g->miss, MissReason::kNone);
  EXPECT_EQ(g->rkey, 42u);
  EXPECT_EQ(g->segment_sizes, (std::vector<uint64_t>{4, 6}));
  ASSERT_TRUE(g->lineage.has_value());
  EXPECT_EQ(g->lineage->parent, TestKey(5));
  EXPECT_EQ(g->lineage->tokens, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(g->token, 99u);
  EXPECT_EQ(g->holder_qpn, 300u);
  EXPECT_EQ(g->ttl, 3s);
  auto other = control.PrepareRead(h, "r", FetchSpec{TestKey(2001), spec.key}, Clock::now() + 2s);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->miss, MissReason::kAbsent);

  // Release returns at once while the holder sits on it; the queue is bounded.
  control.Release(h, 1);  // sent: the holder blocks in it
  handler.WaitReleased(1);
  control.Release(h, 2);
  control.Release(h, 3);
  control.Release(h, 4);  // the queue holds 2: dropped
  EXPECT_EQ(control.GetStats().releases_dropped, 1u);
  handler.Unblock();
  control.DrainReleases();
  EXPECT_EQ(handler.released_, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(control.GetStats().releases_sent, 3u);

  // Malformed control data is refused, not guessed at.
  auto bad = client.Connect(h, {"rdma"}, "\xff\xff not a message", Clock::now() + 2s);
  EXPECT_FALSE(bad.ok());
  (*server)->Stop();
}

TEST(GrpcRdmaControlTest, ANodeWithoutRdmaSaysSo) {
  Directory directory(Directory::Options{});
  FakeChunkSource source;
  PeerServer::Options so;
  so.node = "t";
  so.listen_address = "127.0.0.1";
  PeerServer::Handlers hs;
  hs.directory = &directory;
  hs.source = &source;
  hs.connect = MakeRdmaConnectHandler(nullptr);
  auto server = PeerServer::Start(so, hs);
  ASSERT_TRUE(server.ok());
  PeerClient::Options co;
  co.self = "r";
  PeerClient client(co);
  const Peer t{"t", "127.0.0.1", (*server)->port()};
  auto caps = client.Connect(t, {"tcp", "rdma"}, "", Clock::now() + 2s);
  ASSERT_TRUE(caps.ok());
  EXPECT_EQ(caps->transports, (std::vector<std::string>{"tcp"}));
  GrpcRdmaControl control(&client, {});
  auto g = control.PrepareRead(t, "r", FetchSpec{kNs, TestKey(1)}, Clock::now() + 2s);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().ToString().find("no RDMA"), std::string::npos) << g.status().ToString();
  (*server)->Stop();
}

TEST(TransportModeTest, Parses) {
  EXPECT_EQ(*ParseTransportMode("auto"), TransportMode::kAuto);
  EXPECT_EQ(*ParseTransportMode("rdma"), TransportMode::kRdma);
  EXPECT_EQ(*ParseTransportMode("tcp"), TransportMode::kTcp);
  auto bad = ParseTransportMode("infiniband");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().ToString().find("mesh.transport"), std::string::npos);
}

}  // namespace
}  // namespace tw::mesh::rdma
