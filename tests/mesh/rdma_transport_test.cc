// RdmaTransport on SoftVerbs: byte-exact multi-slice fetches, one queue pair per peer pair,
// error completions, cool-off and backoff without reconnect storms, lost and stuck peers,
// deadline fencing (the destination is never written after Fetch returns), isolation of
// healthy peers from a stuck one, and staging ring exhaustion.
#include "tw/mesh/rdma/rdma_transport.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "fake_clock.h"
#include "rdma_test_util.h"
#include "tw/mesh/rdma/in_process_control.h"
#include "tw/mesh/rdma/soft_verbs.h"

namespace tw::mesh::rdma {
namespace {

using ::tw::mesh::testing::FakeClock;
using ::tw::mesh::testing::MemChunkSource;
using ::tw::mesh::testing::Pattern;
using ::tw::mesh::testing::TestKey;
using namespace std::chrono_literals;

constexpr uint64_t kMiB = uint64_t{1} << 20;

Deadline In(std::chrono::milliseconds d) { return Clock::now() + d; }

// Waits (by condition, bounded generously) for `pred`; false if it never holds.
template <typename Pred>
bool WaitFor(Pred pred) {
  auto until = Clock::now() + 30s;
  while (!pred()) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

class RdmaTransportTest : public ::testing::Test {
 protected:
  struct Node {
    MemChunkSource source;
    std::unique_ptr<RdmaTransport> t;
  };

  RdmaOptions Options(const std::string& name) {
    RdmaOptions o;
    o.node_name = name;
    o.slice_bytes = 256 * 1024;
    o.max_outstanding_per_qp = 4;
    o.staging_bytes = 16 * kMiB;
    o.holder_staging_bytes = 32 * kMiB;
    o.now = clock_.Fn();
    return o;
  }

  Node& Add(const std::string& name, std::function<void(RdmaOptions&)> tweak = nullptr) {
    auto& n = nodes_[name];
    n = std::make_unique<Node>();
    RdmaOptions o = Options(name);
    if (tweak) tweak(o);
    auto t = RdmaTransport::Create(o, fabric_.OpenDevice(name), &control_, &n->source);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    n->t = std::move(*t);
    control_.AddNode(name, n->t.get());
    return *n;
  }

  // The node's process restarts: a new transport (new queue pairs), the same store.
  void Restart(const std::string& name) {
    control_.RemoveNode(name);
    auto& n = nodes_[name];
    n->t.reset();
    auto t = RdmaTransport::Create(Options(name), fabric_.OpenDevice(name), &control_, &n->source);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    n->t = std::move(*t);
    control_.AddNode(name, n->t.get());
  }

  // Stores a value of `size` bytes in three segments on `holder`; returns its spec.
  FetchSpec Store(const std::string& holder, uint64_t id, size_t size) {
    FetchSpec spec{TestKey(1000), TestKey(id)};
    uint64_t a = size / 3, b = size / 3;
    nodes_[holder]->source.Put(spec, Pattern(id, size), {a, b, size - a - b});
    return spec;
  }

  static Peer P(const std::string& node) { return Peer{node, "10.0.0.1", 7470, 1.0}; }

  LinkStats LinkTo(const std::string& from, const std::string& to) {
    for (auto& l : nodes_[from]->t->Links()) {
      if (l.node == to) return l;
    }
    return LinkStats{};
  }

  void TearDown() override {
    for (auto& [name, n] : nodes_) control_.RemoveNode(name);
    nodes_.clear();
  }

  FakeClock clock_;
  SoftFabric fabric_;
  InProcessControl control_;
  std::map<std::string, std::unique_ptr<Node>> nodes_;
};

TEST_F(RdmaTransportTest, MultiSliceValueIsByteExactThroughStagingAndDirect) {
  Add("a");
  Add("b");
  const size_t size = 5 * kMiB + 12345;  // 21 slices of 256 KiB, the last partial
  FetchSpec spec = Store("b", 1, size);
  auto want = Pattern(1, size);

  // Unregistered destination: lands in the requester staging ring, then copied.
  std::vector<std::byte> plain(size + 100);
  FetchResult r = nodes_["a"]->t->Fetch(P("b"), spec, plain, In(10s));
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  EXPECT_EQ(r.bytes, size);
  EXPECT_EQ(r.segment_sizes, (std::vector<uint64_t>{size / 3, size / 3, size - 2 * (size / 3)}));
  EXPECT_EQ(0, std::memcmp(plain.data(), want.data(), size));
  EXPECT_EQ(nodes_["a"]->t->counters().staged_fetches, 1u);

  // Registered destination (a client arena): the READs land in it directly.
  std::vector<std::byte> arena(8 * kMiB);
  ASSERT_TRUE(nodes_["a"]->t->RegisterMemory(arena.data(), arena.size()).ok());
  r = nodes_["a"]->t->Fetch(P("b"), spec, std::span(arena).subspan(4096), In(10s));
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  EXPECT_EQ(0, std::memcmp(arena.data() + 4096, want.data(), size));
  EXPECT_EQ(nodes_["a"]->t->counters().staged_fetches, 1u);
  EXPECT_EQ(fabric_.counters("a").reads_executed, 2 * 21u);
  EXPECT_EQ(LinkTo("a", "b").bytes_in, 2 * size);
  EXPECT_EQ(LinkTo("b", "a").bytes_out, 2 * size);
  nodes_["a"]->t->UnregisterMemory(arena.data());
}

TEST_F(RdmaTransportTest, OutcomesOtherThanHits) {
  Add("a");
  Add("b");
  FetchSpec spec = Store("b", 2, 3 * kMiB);
  std::vector<std::byte> small(kMiB);
  FetchResult r = nodes_["a"]->t->Fetch(P("b"), spec, small, In(10s));
  EXPECT_EQ(r.miss, MissReason::kIoError);
  EXPECT_EQ(r.error.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.segment_sizes.size(), 3u);

  FetchSpec absent{TestKey(1000), TestKey(99)};
  r = nodes_["a"]->t->Fetch(P("b"), absent, small, In(10s));
  EXPECT_EQ(r.miss, MissReason::kAbsent);

  FetchSpec other_ns{TestKey(1001), TestKey(2)};  // same key, another namespace
  r = nodes_["a"]->t->Fetch(P("b"), other_ns, small, In(10s));
  EXPECT_EQ(r.miss, MissReason::kAbsent);

  r = nodes_["a"]->t->Fetch(P("a"), spec, small, In(10s));
  EXPECT_EQ(r.miss, MissReason::kPeerUnreachable);
  EXPECT_TRUE(LinkTo("a", "b").up);  // none of these is the peer's fault
}

TEST_F(RdmaTransportTest, ConcurrentFetchesShareOneQueuePairPerPeerPair) {
  Add("a");
  Add("b");
  Add("c");
  FetchSpec from_b = Store("b", 3, 2 * kMiB + 7);
  FetchSpec from_c = Store("c", 4, kMiB + 3);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      std::vector<std::byte> dest(3 * kMiB);
      for (int j = 0; j < 10; ++j) {
        bool b = (i + j) % 2 == 0;
        FetchResult r = nodes_["a"]->t->Fetch(P(b ? "b" : "c"), b ? from_b : from_c, dest, In(30s));
        auto want = b ? Pattern(3, 2 * kMiB + 7) : Pattern(4, kMiB + 3);
        if (r.miss != MissReason::kNone || std::memcmp(dest.data(), want.data(), want.size())) {
          ++bad;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  // The other direction reuses the pair's queue pairs.
  Store("a", 5, kMiB);
  std::vector<std::byte> dest(kMiB);
  EXPECT_EQ(nodes_["b"]->t->Fetch(P("a"), {TestKey(1000), TestKey(5)}, dest, In(10s)).miss,
            MissReason::kNone);
  EXPECT_EQ(nodes_["c"]->t->Fetch(P("a"), {TestKey(1000), TestKey(5)}, dest, In(10s)).miss,
            MissReason::kNone);

  EXPECT_EQ(nodes_["a"]->t->counters().qps_created, 2u);
  EXPECT_EQ(nodes_["a"]->t->live_qps(), 2u);
  EXPECT_EQ(nodes_["a"]->t->counters().connect_attempts, 2u);
  EXPECT_EQ(nodes_["b"]->t->counters().qps_created, 1u);
  EXPECT_EQ(nodes_["c"]->t->counters().qps_created, 1u);
  EXPECT_EQ(fabric_.counters("a").qps_created, 2u);
  EXPECT_EQ(fabric_.counters("b").qps_live, 1u);
  EXPECT_EQ(control_.calls("b").connect, 1u);
}

TEST_F(RdmaTransportTest, NodeSortingSecondAsksTheFirstToConnect) {
  Add("a");
  Add("z");
  Store("a", 6, kMiB);
  std::vector<std::byte> dest(kMiB);
  FetchResult r = nodes_["z"]->t->Fetch(P("a"), {TestKey(1000), TestKey(6)}, dest, In(10s));
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  EXPECT_EQ(control_.calls("a").request_connect, 1u);
  EXPECT_EQ(control_.calls("z").connect, 1u);
  EXPECT_EQ(control_.calls("a").connect, 0u);
  // A Connect sent the wrong way is refused with a clear error.
  auto wrong = nodes_["a"]->t->HandleConnect(ConnectRequest{"z", QpEndpoint{}});
  EXPECT_EQ(wrong.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(nodes_["a"]->t->live_qps(), 1u);
  EXPECT_EQ(nodes_["z"]->t->live_qps(), 1u);
}

TEST_F(RdmaTransportTest, FirstFetchesInBothDirectionsAtOnceBuildOneConnection) {
  for (int pair = 0; pair < 10; ++pair) {
    std::string lo = "a" + std::to_string(pair), hi = "z" + std::to_string(pair);
    Add(lo);
    Add(hi);
    FetchSpec at_lo = Store(lo, 100 + pair, kMiB);
    FetchSpec at_hi = Store(hi, 200 + pair, kMiB);
    std::atomic<int> bad{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&, i] {
        bool from_hi = i % 2 == 0;
        std::vector<std::byte> d(kMiB);
        FetchResult r = nodes_[from_hi ? lo : hi]->t->Fetch(P(from_hi ? hi : lo),
                                                            from_hi ? at_hi : at_lo, d, In(30s));
        if (r.miss != MissReason::kNone) {
          ADD_FAILURE() << r.error.ToString();
          ++bad;
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(nodes_[lo]->t->live_qps(), 1u);
    EXPECT_EQ(nodes_[hi]->t->live_qps(), 1u);
    EXPECT_EQ(nodes_[lo]->t->counters().qp_failures, 0u);
    EXPECT_EQ(nodes_[hi]->t->counters().qp_failures, 0u);
  }
}

TEST_F(RdmaTransportTest, APeerThatRestartedIsReconnected) {
  Add("a");
  Add("z");
  FetchSpec at_a = Store("a", 20, kMiB);
  FetchSpec at_z = Store("z", 21, kMiB);
  std::vector<std::byte> d(kMiB);
  ASSERT_EQ(nodes_["z"]->t->Fetch(P("a"), at_a, d, In(10s)).miss, MissReason::kNone);

  // z (which asks a to connect) restarts: a still holds a connection to z's old queue pair.
  // z's first fetch is served: a keeps a connection it has, so z names it as failed.
  Restart("z");
  auto asked = control_.calls("a").request_connect;
  FetchResult r = nodes_["z"]->t->Fetch(P("a"), at_a, d, In(10s));
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  EXPECT_EQ(control_.calls("a").request_connect, asked + 2);
  EXPECT_EQ(nodes_["a"]->t->live_qps(), 1u);
  EXPECT_EQ(fabric_.counters("a").qps_live, 1u);

  // a (which builds the pair's connection) restarts: its first fetch from z rebuilds it.
  Restart("a");
  r = nodes_["a"]->t->Fetch(P("z"), at_z, d, In(10s));
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  EXPECT_EQ(0, std::memcmp(d.data(), Pattern(21, kMiB).data(), kMiB));
  EXPECT_EQ(nodes_["z"]->t->live_qps(), 1u);

  // a restarts again, and this time z fetches first: a's grant shows that z's connection goes
  // to a queue pair a no longer has, so z reconnects before READing instead of failing.
  Restart("a");
  auto failures = nodes_["z"]->t->counters().qp_failures;
  r = nodes_["z"]->t->Fetch(P("a"), at_a, d, In(10s));
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  EXPECT_EQ(0, std::memcmp(d.data(), Pattern(20, kMiB).data(), kMiB));
  EXPECT_EQ(nodes_["z"]->t->counters().qp_failures, failures);
  EXPECT_TRUE(LinkTo("z", "a").up);
  EXPECT_EQ(nodes_["z"]->t->live_qps(), 1u);
  EXPECT_EQ(nodes_["a"]->t->live_qps(), 1u);
}

TEST_F(RdmaTransportTest, AFetchWhoseQueuePairIsReplacedReadsAgainOnTheNewOne) {
  Add("a");
  Add("z");
  FetchSpec at_a = Store("a", 22, 2 * kMiB);
  std::vector<std::byte> d(2 * kMiB);
  ASSERT_EQ(nodes_["z"]->t->Fetch(P("a"), at_a, d, In(10s)).miss, MissReason::kNone);

  fabric_.SetFault("a", SoftFabric::Fault::kStall);
  std::fill(d.begin(), d.end(), std::byte{0});
  FetchResult r;
  std::thread fetch([&] { r = nodes_["z"]->t->Fetch(P("a"), at_a, d, In(60s)); });
  ASSERT_TRUE(WaitFor([&] { return fabric_.counters("z").reads_held >= 1; }));
  // z's READs are in flight when a rebuilds the pair's connection (as it does when z names
  // a's queue pair as failed): z's queue pair is replaced under the fetch.
  ReadGrant g = nodes_["a"]->t->HandlePrepareRead("z", at_a, In(1s));
  ASSERT_NE(g.holder_qpn, 0u);
  nodes_["a"]->t->HandleRelease(g.token);
  auto reply = nodes_["a"]->t->HandleRequestConnect("z", g.holder_qpn, In(10s));
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_NE(reply->holder_qpn, g.holder_qpn);
  fabric_.SetFault("a", SoftFabric::Fault::kNone);
  fetch.join();
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  EXPECT_EQ(0, std::memcmp(d.data(), Pattern(22, 2 * kMiB).data(), 2 * kMiB));
  EXPECT_EQ(nodes_["z"]->t->counters().qp_failures, 0u);
  EXPECT_TRUE(LinkTo("z", "a").up);
  EXPECT_TRUE(WaitFor([&] { return nodes_["z"]->t->live_qps() == 1; }));
}

TEST_F(RdmaTransportTest, RemoteAccessErrorResetsTheQueuePairAndRecoversAfterCoolOff) {
  Add("a");
  Add("b");
  FetchSpec spec = Store("b", 7, 2 * kMiB);
  std::vector<std::byte> dest(2 * kMiB);
  ASSERT_EQ(nodes_["a"]->t->Fetch(P("b"), spec, dest, In(10s)).miss, MissReason::kNone);

  control_.CorruptNextGrants("b", 1);
  FetchResult r = nodes_["a"]->t->Fetch(P("b"), spec, dest, In(10s));
  EXPECT_EQ(r.miss, MissReason::kPeerUnreachable);
  EXPECT_NE(r.error.ToString().find("remote access error"), std::string::npos)
      << r.error.ToString();
  EXPECT_FALSE(LinkTo("a", "b").up);
  EXPECT_NE(LinkTo("a", "b").last_error.find("remote access error"), std::string::npos);

  // Down: fails fast, asks the holder nothing, builds nothing.
  auto prepares = control_.calls("b").prepare;
  r = nodes_["a"]->t->Fetch(P("b"), spec, dest, In(10s));
  EXPECT_EQ(r.miss, MissReason::kPeerUnreachable);
  EXPECT_NE(r.error.ToString().find("down"), std::string::npos) << r.error.ToString();
  EXPECT_EQ(control_.calls("b").prepare, prepares);
  EXPECT_EQ(nodes_["a"]->t->counters().connect_attempts, 1u);

  clock_.Advance(100ms);  // the first cool-off
  std::fill(dest.begin(), dest.end(), std::byte{0});
  r = nodes_["a"]->t->Fetch(P("b"), spec, dest, In(10s));
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  EXPECT_EQ(0, std::memcmp(dest.data(), Pattern(7, 2 * kMiB).data(), 2 * kMiB));
  EXPECT_TRUE(LinkTo("a", "b").up);
  EXPECT_EQ(nodes_["a"]->t->counters().connect_attempts, 2u);
  EXPECT_EQ(nodes_["a"]->t->counters().qp_failures, 1u);
  // The failed queue pairs are gone on both sides; one pair remains.
  EXPECT_EQ(nodes_["a"]->t->live_qps(), 1u);
  EXPECT_EQ(nodes_["b"]->t->live_qps(), 1u);
  EXPECT_EQ(fabric_.counters("a").qps_live, 1u);
}

TEST_F(RdmaTransportTest, RepeatedFailuresBackOffWithoutAReconnectStorm) {
  Add("a");
  Add("b");
  FetchSpec spec = Store("b", 8, kMiB);
  control_.SetUnreachable("b", true);
  std::vector<std::byte> dest(kMiB);
  auto fetch_all = [&](int n) {
    std::atomic<int> hits{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&] {
        std::vector<std::byte> d(kMiB);
        for (int j = 0; j < n; ++j) {
          if (nodes_["a"]->t->Fetch(P("b"), spec, d, In(10s)).miss == MissReason::kNone) ++hits;
        }
      });
    }
    for (auto& t : threads) t.join();
    return hits.load();
  };
  EXPECT_EQ(fetch_all(25), 0);
  EXPECT_EQ(control_.calls("b").connect, 1u);  // 100 fetches, one attempt
  clock_.Advance(99ms);
  EXPECT_EQ(fetch_all(10), 0);
  EXPECT_EQ(control_.calls("b").connect, 1u);
  clock_.Advance(1ms);  // first cool-off (100 ms) over: one more attempt, then 200 ms
  EXPECT_EQ(fetch_all(10), 0);
  EXPECT_EQ(control_.calls("b").connect, 2u);
  clock_.Advance(100ms);
  EXPECT_EQ(fetch_all(10), 0);
  EXPECT_EQ(control_.calls("b").connect, 2u);
  clock_.Advance(100ms);  // 200 ms: third attempt, then 400 ms
  EXPECT_EQ(fetch_all(10), 0);
  EXPECT_EQ(control_.calls("b").connect, 3u);
  EXPECT_EQ(nodes_["a"]->t->counters().connect_attempts, 3u);
  EXPECT_EQ(nodes_["a"]->t->live_qps(), 0u);  // failed attempts leave no queue pair behind

  control_.SetUnreachable("b", false);
  clock_.Advance(400ms);
  EXPECT_EQ(nodes_["a"]->t->Fetch(P("b"), spec, dest, In(10s)).miss, MissReason::kNone);
  EXPECT_EQ(control_.calls("b").connect, 4u);
}

TEST_F(RdmaTransportTest, LostPeerIsUnreachableWithinTheDeadline) {
  Add("a");
  Add("b");
  FetchSpec spec = Store("b", 9, 2 * kMiB);
  std::vector<std::byte> dest(2 * kMiB);
  ASSERT_EQ(nodes_["a"]->t->Fetch(P("b"), spec, dest, In(10s)).miss, MissReason::kNone);

  // b's process dies: its queue pairs vanish, its control plane stops answering.
  fabric_.SetFault("b", SoftFabric::Fault::kDead);
  control_.SetUnreachable("b", true);
  Deadline deadline = In(5s);
  FetchResult r = nodes_["a"]->t->Fetch(P("b"), spec, dest, deadline);
  EXPECT_EQ(r.miss, MissReason::kPeerUnreachable);
  EXPECT_LT(Clock::now(), deadline);
  EXPECT_FALSE(LinkTo("a", "b").up);
  EXPECT_EQ(nodes_["a"]->t->live_qps(), 0u);
}

TEST_F(RdmaTransportTest, DeadlineFencesAStuckPeerAndTheDestinationIsNeverWrittenAfter) {
  Add("a");
  Add("b");
  const size_t size = 3 * kMiB;
  FetchSpec spec = Store("b", 10, size);
  std::vector<std::byte> arena(4 * kMiB);
  ASSERT_TRUE(nodes_["a"]->t->RegisterMemory(arena.data(), arena.size()).ok());
  ASSERT_EQ(nodes_["a"]->t->Fetch(P("b"), spec, arena, In(10s)).miss, MissReason::kNone);
  auto executed = fabric_.counters("a").reads_executed;

  // b stops answering READs (a hung NIC or host): its control plane still works.
  fabric_.SetFault("b", SoftFabric::Fault::kStall);
  std::fill(arena.begin(), arena.end(), std::byte{0});
  Deadline deadline = In(300ms);
  FetchResult r = nodes_["a"]->t->Fetch(P("b"), spec, arena, deadline);
  EXPECT_EQ(r.miss, MissReason::kPeerUnreachable);
  EXPECT_EQ(r.error.code(), StatusCode::kDeadlineExceeded) << r.error.ToString();
  EXPECT_GE(Clock::now(), deadline);
  EXPECT_EQ(nodes_["a"]->t->counters().fences, 1u);
  EXPECT_EQ(fabric_.counters("a").reads_held, 0u);  // flushed by the fence

  // The caller reuses the arena; the peer comes back: nothing may land in it now.
  std::fill(arena.begin(), arena.end(), std::byte{0xEE});
  fabric_.SetFault("b", SoftFabric::Fault::kNone);
  EXPECT_EQ(fabric_.counters("a").reads_executed, executed);
  for (std::byte x : arena) ASSERT_EQ(x, std::byte{0xEE});
  EXPECT_FALSE(LinkTo("a", "b").up);
  EXPECT_EQ(nodes_["a"]->t->live_qps(), 0u);

  clock_.Advance(100ms);
  r = nodes_["a"]->t->Fetch(P("b"), spec, arena, In(10s));
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  EXPECT_EQ(0, std::memcmp(arena.data(), Pattern(10, size).data(), size));
  nodes_["a"]->t->UnregisterMemory(arena.data());
}

TEST_F(RdmaTransportTest, AStuckPeerNeverDelaysFetchesFromAHealthyOne) {
  Add("a");
  Add("b");
  Add("c");
  FetchSpec stuck = Store("b", 11, 2 * kMiB);
  FetchSpec healthy = Store("c", 12, 2 * kMiB);
  fabric_.SetFault("b", SoftFabric::Fault::kStall);

  std::atomic<int> stuck_done{0};
  std::vector<std::thread> waiting;
  for (int i = 0; i < 3; ++i) {
    waiting.emplace_back([&] {
      std::vector<std::byte> d(2 * kMiB);
      FetchResult r = nodes_["a"]->t->Fetch(P("b"), stuck, d, In(60s));
      EXPECT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
      ++stuck_done;
    });
  }
  // b's window fills with held READs.
  ASSERT_TRUE(WaitFor([&] { return fabric_.counters("a").reads_held >= 4; }));
  ASSERT_EQ(fabric_.counters("a").reads_held, 4u);  // max_outstanding_per_qp

  std::vector<std::byte> d(2 * kMiB);
  for (int i = 0; i < 20; ++i) {
    FetchResult r = nodes_["a"]->t->Fetch(P("c"), healthy, d, In(60s));
    ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  }
  EXPECT_EQ(0, std::memcmp(d.data(), Pattern(12, 2 * kMiB).data(), 2 * kMiB));
  // All 20 completed while every fetch from b was still waiting.
  EXPECT_EQ(stuck_done.load(), 0);
  EXPECT_EQ(fabric_.counters("a").reads_held, 4u);

  fabric_.SetFault("b", SoftFabric::Fault::kNone);
  for (auto& t : waiting) t.join();
  EXPECT_EQ(stuck_done.load(), 3);
  EXPECT_TRUE(LinkTo("a", "b").up);
}

TEST_F(RdmaTransportTest, HolderStagingRingFullWaitsWithinTheDeadline) {
  Add("a");
  Add("b", [](RdmaOptions& o) { o.holder_staging_bytes = 2 * kMiB; });
  FetchSpec spec = Store("b", 13, 2 * kMiB);
  // Another peer's grant holds the whole ring.
  ReadGrant held = nodes_["b"]->t->HandlePrepareRead("c", spec, In(1s));
  ASSERT_EQ(held.miss, MissReason::kNone);

  std::vector<std::byte> dest(2 * kMiB);
  Deadline deadline = In(200ms);
  FetchResult r = nodes_["a"]->t->Fetch(P("b"), spec, dest, deadline);
  EXPECT_EQ(r.miss, MissReason::kDeadline);
  EXPECT_EQ(r.error.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.error.ToString().find("staging ring full"), std::string::npos) << r.error.ToString();
  EXPECT_GE(Clock::now(), deadline);
  EXPECT_TRUE(LinkTo("a", "b").up);  // a busy holder is not a failed one

  // Released: the next fetch is served.
  nodes_["b"]->t->HandleRelease(held.token);
  EXPECT_EQ(nodes_["a"]->t->Fetch(P("b"), spec, dest, In(10s)).miss, MissReason::kNone);

  // A grant never released is freed by its TTL.
  held = nodes_["b"]->t->HandlePrepareRead("c", spec, In(1s));
  ASSERT_EQ(held.miss, MissReason::kNone);
  EXPECT_EQ(nodes_["b"]->t->ExpireGrants(), 0u);
  clock_.Advance(10s);
  EXPECT_EQ(nodes_["b"]->t->ExpireGrants(), 1u);
  EXPECT_EQ(nodes_["a"]->t->Fetch(P("b"), spec, dest, In(10s)).miss, MissReason::kNone);
}

TEST_F(RdmaTransportTest, RequesterStagingRingFullOrTooSmall) {
  Add("a", [](RdmaOptions& o) { o.staging_bytes = 2 * kMiB; });
  Add("b");
  FetchSpec big = Store("b", 14, 3 * kMiB);
  std::vector<std::byte> dest(3 * kMiB);
  FetchResult r = nodes_["a"]->t->Fetch(P("b"), big, dest, In(10s));
  EXPECT_EQ(r.miss, MissReason::kDeadline);
  EXPECT_EQ(r.error.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.error.ToString().find("do not fit"), std::string::npos) << r.error.ToString();
  // Registering the destination lifts the limit: no staging needed.
  ASSERT_TRUE(nodes_["a"]->t->RegisterMemory(dest.data(), dest.size()).ok());
  EXPECT_EQ(nodes_["a"]->t->Fetch(P("b"), big, dest, In(10s)).miss, MissReason::kNone);
  EXPECT_EQ(nodes_["a"]->t->RegisterMemory(dest.data() + 10, 10).code(),
            StatusCode::kAlreadyExists);
  nodes_["a"]->t->UnregisterMemory(dest.data());
}

TEST(RdmaOptionsTest, ValidateNamesTheField) {
  RdmaOptions o;
  EXPECT_NE(o.Validate().ToString().find("node_name"), std::string::npos);
  o.node_name = "a";
  EXPECT_TRUE(o.Validate().ok());
  o.slice_bytes = 0;
  EXPECT_NE(o.Validate().ToString().find("slice_bytes"), std::string::npos);
  o.slice_bytes = kMiB;
  o.max_outstanding_per_qp = 0;
  EXPECT_NE(o.Validate().ToString().find("max_outstanding_per_qp"), std::string::npos);
  o.max_outstanding_per_qp = 16;
  o.cooloff_max = 1ms;
  EXPECT_NE(o.Validate().ToString().find("cooloff"), std::string::npos);
}

}  // namespace
}  // namespace tw::mesh::rdma
