// libtwclient's C++ API. Against the real twd in-process (RealTwd: the service core, the
// socket codec and server over the real store on a temporary directory): hello with the memfd
// arena, put/get through the arena (whole values and scatter lists), lookup, exists, delete,
// stats, and STATS agreeing with /metrics. Against MisbehavingTwd, only what the real twd must
// never do: pipelined requests answered out of order or never, garbage, hang-ups, fatal
// errors, older protocol versions, and reports of how lookup keys travelled.
#include "tw/client/client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <thread>

#include "misbehaving_twd.h"
#include "real_twd.h"

namespace tw::client {
namespace {

using testing::MisbehavingTwd;
using testing::RealTwd;

Namespace TestNamespace() {
  Namespace ns;
  ns.model = "m";
  ns.kv_dtype = "bfloat16";  // normalised to bf16 at connect
  ns.parallel = "tp=0/1";
  ns.chunk_tokens = "4";
  return ns;
}

// Helpers shared by both fixtures below; `socket_` is set by the fixture's SetUp.
// A counter family of twd's /metrics summed over every label but `label`, by `label`'s value.
StatusOr<std::map<std::string, uint64_t>> Scrape(int port, const std::string& family,
                                                 const std::string& label) {
  if (port <= 0) return FailedPreconditionError("twd serves no metrics");
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string text;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    Status st = ErrnoStatus(errno, "connect to /metrics");
    ::close(fd);
    return st;
  }
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return InternalError("short send to /metrics");
  }
  char buf[65536];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) text.append(buf, n);
  ::close(fd);
  std::map<std::string, uint64_t> sums;
  std::istringstream lines(text);
  const std::string key = label + "=\"";
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(family + "{", 0) != 0) continue;
    const size_t r = line.find(key);
    if (r == std::string::npos) continue;
    const size_t end = line.find('"', r + key.size());
    sums[line.substr(r + key.size(), end - r - key.size())] +=
        static_cast<uint64_t>(std::stod(line.substr(line.rfind(' ') + 1)));
  }
  return sums;
}

class ClientFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("twclient-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Client> Connect(uint64_t key_area_size = ClientOptions{}.key_area_size) {
    ClientOptions o;
    o.socket_path = socket_;
    o.arena_size = 3 << 20;
    o.key_area_size = key_area_size;
    o.namespaces = {TestNamespace()};
    o.timeout = std::chrono::milliseconds(5000);
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Puts chunk j of a chain (value = `size` bytes) from `arena_offset`. The items of one
  // request must not share arena bytes (twd refuses overlapping ranges).
  PutItem MakePut(Client& c, const Key& parent, uint32_t first_token, uint64_t size,
                  uint64_t arena_offset = 0) {
    PutItem p;
    p.ref.namespace_digest = c.namespace_digest(0);
    p.parent = parent;
    p.tokens = {first_token, first_token + 1, first_token + 2, first_token + 3};
    p.ref.key = ChunkKey(parent, {}, p.tokens);
    p.segment_sizes = {size};
    p.ranges = {ScatterRange{0, 0, size, arena_offset}};
    return p;
  }

  // A chain of `n` chunks of 64 bytes whose first `stored` are put to the fake twd.
  std::vector<Key> StoredChain(Client& c, size_t n, size_t stored) {
    std::vector<Key> chain;
    Key parent = c.namespace_digest(0);
    for (size_t i = 0; i < n; ++i) {
      PutItem p = MakePut(c, parent, static_cast<uint32_t>(i * 4), 64);
      if (i < stored) {
        EXPECT_TRUE(c.Put({p}).ok());
      }
      chain.push_back(p.ref.key);
      parent = p.ref.key;
    }
    return chain;
  }

  std::filesystem::path dir_;
  std::string socket_;
};

// The real twd.
class ClientTest : public ClientFixture {
 protected:
  void SetUp() override {
    ClientFixture::SetUp();
    Status st = twd_.Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
    socket_ = twd_.socket_path();
  }
  RealTwd twd_;
};

// A twd that misbehaves on request.
class MisbehavingTwdTest : public ClientFixture {
 protected:
  void SetUp() override {
    ClientFixture::SetUp();
    ASSERT_TRUE(fake_.Start((dir_ / "twd.sock").string()).ok());
    socket_ = fake_.socket_path();
  }
  MisbehavingTwd fake_;
};

TEST_F(ClientTest, HelloPassesAPrefaultedSealedArena) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->arena_size(), uint64_t{4} << 20);  // rounded up to 2 MiB
  // twd maps the caller's part and the key area after it.
  EXPECT_EQ(c->arena().mapped_size(), c->arena_size() + (uint64_t{2} << 20));
  Namespace canonical = *NormalizeNamespace(TestNamespace());
  EXPECT_EQ(c->namespace_digest(0), NamespaceDigest(canonical));
  EXPECT_EQ(c->session().server_version.rfind("twd ", 0), 0u) << c->session().server_version;
  // twd mapped all of it (its STATS report this connection's arena).
  auto s = c->GetStats();
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->arena_size, c->arena().mapped_size());
  EXPECT_EQ(s->version, 3u);
  EXPECT_TRUE(c->Ping().ok());
}

TEST_F(ClientTest, ConnectErrorsNameTheProblem) {
  ClientOptions o;
  o.socket_path = (dir_ / "nothing.sock").string();
  o.arena_size = 1 << 20;
  auto c = Client::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound) << c.status().ToString();
  EXPECT_NE(c.status().message().find("nothing.sock"), std::string::npos);

  o.socket_path = socket_;
  Namespace bad = TestNamespace();
  bad.parallel = "tp=9/8";
  o.namespaces = {bad};
  c = Client::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("namespaces[0]"), std::string::npos);
}

TEST_F(ClientTest, PutThenGetMovesBytesThroughTheArena) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const uint64_t size = 100000;
  for (uint64_t i = 0; i < size; ++i) c->arena_data()[i] = static_cast<uint8_t>(i * 7);
  PutItem p = MakePut(*c, c->namespace_digest(0), 1, size);
  auto put = c->Put({p});
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ((*put)[0].result, PutResult::kStored);
  auto again = c->Put({p});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].result, PutResult::kExists);

  GetItem g;
  g.ref = p.ref;
  g.arena_offset = 1 << 20;
  g.arena_length = size;
  auto got = c->Get({g});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)[0].miss, MissReason::kNone);
  EXPECT_EQ((*got)[0].tier, Tier::kDram);
  EXPECT_EQ((*got)[0].bytes, size);
  EXPECT_EQ(std::memcmp(c->arena_data(), c->arena_data() + (1 << 20), size), 0);

  // Scatter: the second half of the value to one place, the first 10 bytes to another.
  GetItem s;
  s.ref = p.ref;
  s.ranges = {ScatterRange{0, size / 2, size / 2, 2 << 20}, ScatterRange{0, 0, 10, 3 << 20}};
  got = c->Get({s});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)[0].bytes, size / 2 + 10);
  EXPECT_EQ(std::memcmp(c->arena_data() + size / 2, c->arena_data() + (2 << 20), size / 2), 0);
  EXPECT_EQ(std::memcmp(c->arena_data(), c->arena_data() + (3 << 20), 10), 0);
}

TEST_F(ClientTest, WrongKeyIsRefusedWithAMessage) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  PutItem p = MakePut(*c, c->namespace_digest(0), 1, 64);
  p.tokens[0] = 999;  // tokens no longer produce the key
  auto put = c->Put({p});
  ASSERT_TRUE(put.ok());
  EXPECT_EQ((*put)[0].result, PutResult::kInvalid);
  EXPECT_FALSE((*put)[0].message.empty());
}

TEST_F(ClientTest, LookupExistsDeleteStats) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  Key ns = c->namespace_digest(0);
  PutItem a = MakePut(*c, ns, 1, 64);
  PutItem b = MakePut(*c, a.ref.key, 5, 64, 64);
  PutItem z = MakePut(*c, b.ref.key, 9, 64);  // not stored
  ASSERT_TRUE(c->Put({a, b}).ok());
  std::vector<Key> chain = {a.ref.key, b.ref.key, z.ref.key};
  auto l = c->LookupChainOf(ns, chain, /*take_lease=*/true);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->prefix, 2u);
  EXPECT_EQ(l->miss, MissReason::kAbsent);
  EXPECT_NE(l->lease, 0u);
  ASSERT_EQ(l->tiers.size(), 1u);
  EXPECT_EQ(l->tiers[0].size(), 2u);

  auto e = c->Exists({a.ref, z.ref});
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE((*e)[0].exists);
  EXPECT_EQ((*e)[0].value_size, 64u);
  EXPECT_FALSE((*e)[1].exists);

  auto d = c->Delete({b.ref, z.ref});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, (std::vector<bool>{true, false}));
  l = c->LookupChainOf(ns, chain);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->prefix, 1u);

  auto s = c->GetStats();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->puts.at("stored"), 2u);
  EXPECT_EQ(s->live_leases, 1u);
  std::string json = StatsToJson(*s);
  EXPECT_NE(json.find("\"dram\":{\"hits\":"), std::string::npos) << json;

  // Only the lease this uid holds is released.
  auto r = c->ReleaseLeases({l->lease + 1000});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, 0u);
}

// Every put result and get outcome is counted once, in the same place for STATS and
// /metrics: after a mixed workload (stored, exists, invalid; hits, misses) both moved alike.
TEST_F(ClientTest, StatsAndMetricsAgreeAfterAMixedWorkload) {
  const int port = twd_.metrics_port();
  auto scrape = [port] {
    std::map<std::string, std::map<std::string, uint64_t>> m;
    auto puts = Scrape(port, "tokenwarehouse_puts_total", "result");
    auto hits = Scrape(port, "tokenwarehouse_get_hits_total", "tier");
    auto misses = Scrape(port, "tokenwarehouse_get_misses_total", "reason");
    EXPECT_TRUE(puts.ok() && hits.ok() && misses.ok()) << puts.status().ToString();
    if (puts.ok()) m["puts"] = *puts;
    if (misses.ok()) m["misses"] = *misses;
    uint64_t all_hits = 0;
    for (const auto& [tier, n] : hits.value_or(std::map<std::string, uint64_t>{})) all_hits += n;
    m["hits"]["all"] = all_hits;
    return m;
  };
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  auto before_stats = c->GetStats();
  ASSERT_TRUE(before_stats.ok());
  auto before_metrics = scrape();

  Key parent = c->namespace_digest(0);
  std::vector<PutItem> chain;
  for (uint32_t i = 0; i < 4; ++i) {
    chain.push_back(MakePut(*c, parent, 100 + 4 * i, 4096, 4096 * i));
    parent = chain.back().ref.key;
  }
  auto put = c->Put(chain);  // 4 stored
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  put = c->Put({chain[0], chain[1]});  // 2 exist
  ASSERT_TRUE(put.ok());
  PutItem poisoned = MakePut(*c, c->namespace_digest(0), 900, 64);
  poisoned.tokens[1] = 7;  // its tokens no longer produce its key: refused
  PutItem orphan = MakePut(*c, MakePut(*c, c->namespace_digest(0), 950, 64).ref.key, 960, 64, 4096);
  put = c->Put({poisoned, orphan});  // 2 invalid (wrong key, unknown parent)
  ASSERT_TRUE(put.ok());
  EXPECT_EQ((*put)[0].result, PutResult::kInvalid);
  EXPECT_EQ((*put)[1].result, PutResult::kInvalid);
  GetItem hit{chain[0].ref, {}, 0, 4096, 0};
  GetItem hit2{chain[1].ref, {}, 4096, 4096, 0};
  GetItem miss{poisoned.ref, {}, 8192, 4096, 0};
  auto got = c->Get({hit, hit2, miss});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)[2].miss, MissReason::kAbsent);

  auto after_stats = c->GetStats();
  ASSERT_TRUE(after_stats.ok());
  auto after_metrics = scrape();
  const std::map<std::string, uint64_t> want = {{"stored", 4}, {"exists", 2}, {"invalid", 2}};
  for (size_t i = 0; i < kPutResultCount; ++i) {
    const std::string name(ToString(static_cast<PutResult>(i)));
    const uint64_t stats = after_stats->puts[name] - before_stats->puts[name];
    const uint64_t metrics = after_metrics["puts"][name] - before_metrics["puts"][name];
    EXPECT_EQ(stats, metrics) << name;
    EXPECT_EQ(stats, want.contains(name) ? want.at(name) : 0u) << name;
  }
  EXPECT_EQ(after_stats->get_hits - before_stats->get_hits, 2u);
  EXPECT_EQ(after_metrics["hits"]["all"] - before_metrics["hits"]["all"], 2u);
  for (int r = 1; r < 8; ++r) {
    const std::string name(ToString(static_cast<MissReason>(r)));
    const uint64_t stats = after_stats->get_misses[name] - before_stats->get_misses[name];
    const uint64_t metrics = after_metrics["misses"][name] - before_metrics["misses"][name];
    EXPECT_EQ(stats, metrics) << name;
    EXPECT_EQ(stats, name == "absent" ? 1u : 0u) << name;
  }
}

// Protocol version 3: lookups put their key chains in the key area after the arena, where
// twd reads them; the slots come back once answered; older versions and a client without a
// key area send the keys in the message.
TEST_F(MisbehavingTwdTest, LookupKeysTravelInTheKeyAreaFromVersion3) {
  fake_.version = 3;
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const std::vector<Key> chain = StoredChain(*c, 6, 4);
  // More lookups than the area has slots, one after another: every one finds a free slot.
  for (int i = 0; i < 40; ++i) {
    auto l = c->LookupChainOf(c->namespace_digest(0), chain);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    EXPECT_EQ(l->prefix, 4u);
  }
  // A tensor-parallel item of two chains shares one slot: the second chain's keys follow
  // the first's, past the caller's arena.
  LookupChain rank{c->namespace_digest(0), chain};
  auto two = c->Lookup({{rank, rank}}, false);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ((*two)[0].prefix, 4u);
  const std::vector<uint64_t> at = fake_.last_arena_offsets();
  ASSERT_EQ(at.size(), 2u);
  EXPECT_GE(at[0], c->arena_size());
  EXPECT_EQ(at[1], at[0] + chain.size() * sizeof(Key));
  EXPECT_EQ(fake_.chains_in_arena.load(), 42);
  EXPECT_EQ(fake_.chains_packed.load() + fake_.chains_repeated.load(), 0);
  // A chain longer than a slot (4096 keys) goes packed in the message.
  std::vector<Key> longer = chain;
  longer.resize(5000, chain.back());
  auto l = c->LookupChainOf(c->namespace_digest(0), longer);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->prefix, 4u);
  EXPECT_EQ(fake_.chains_packed.load(), 1);
}

TEST_F(MisbehavingTwdTest, LookupKeysGoInTheMessageWithoutAKeyArea) {
  for (uint32_t version : {1u, 2u, 3u}) {
    fake_.version = version;
    fake_.chains_repeated = fake_.chains_packed = fake_.chains_in_arena = 0;
    auto c = Connect(version == 3 ? 0 : ClientOptions{}.key_area_size);
    ASSERT_NE(c, nullptr);
    const std::vector<Key> chain = StoredChain(*c, 3, 2);
    auto l = c->LookupChainOf(c->namespace_digest(0), chain);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    EXPECT_EQ(l->prefix, 2u) << version;
    EXPECT_EQ(fake_.chains_repeated.load(), version == 1 ? 1 : 0) << version;
    EXPECT_EQ(fake_.chains_packed.load(), version == 1 ? 0 : 1) << version;
    EXPECT_EQ(fake_.chains_in_arena.load(), 0) << version;
  }
}

TEST_F(MisbehavingTwdTest, KeyAreaIsDroppedWhenTwdRefusesTheLargerArena) {
  // twd's limit fits the arena but not the key area after it: the client connects again
  // without one, and its lookups send their keys in the message.
  fake_.version = 3;
  fake_.max_arena_size = uint64_t{4} << 20;
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->arena().mapped_size(), c->arena_size());
  EXPECT_EQ(fake_.last_arena_size.load(), uint64_t{4} << 20);
  const std::vector<Key> chain = StoredChain(*c, 3, 2);
  auto l = c->LookupChainOf(c->namespace_digest(0), chain);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->prefix, 2u);
  EXPECT_EQ(fake_.chains_packed.load(), 1);
  EXPECT_EQ(fake_.chains_in_arena.load(), 0);
  // An arena over the limit by itself is still refused, with twd's reason.
  ClientOptions o;
  o.socket_path = fake_.socket_path();
  o.arena_size = 5 << 20;
  auto refused = Client::Connect(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("max_arena_size"), std::string_view::npos);
}

TEST_F(MisbehavingTwdTest, ConcurrentLookupsShareTheKeyArea) {
  // 8 threads with 8 lookups each in flight: more than the 16 slots, so some go packed;
  // every answer is right whichever way its keys went.
  fake_.version = 3;
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  const std::vector<Key> chain = StoredChain(*c, 64, 40);
  std::atomic<int> right{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 10; ++round) {
        std::vector<Future<std::vector<LookupReply>>> futures;
        for (int i = 0; i < 8; ++i) {
          // Each lookup asks for its own prefix length of the chain.
          const size_t n = static_cast<size_t>(1 + (t * 8 + i + round) % 64);
          LookupChain lc{c->namespace_digest(0), {chain.begin(), chain.begin() + n}};
          futures.push_back(c->LookupAsync({{lc}}, false));
        }
        for (int i = 0; i < 8; ++i) {
          const size_t n = static_cast<size_t>(1 + (t * 8 + i + round) % 64);
          auto r = Await(futures[i], std::chrono::milliseconds(5000));
          if (r.ok() && (*r)[0].prefix == std::min<size_t>(n, 40)) ++right;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(right.load(), 8 * 10 * 8);
  EXPECT_EQ(fake_.chains_in_arena.load() + fake_.chains_packed.load(), 8 * 10 * 8);
  EXPECT_GT(fake_.chains_in_arena.load(), 0);
}

TEST_F(MisbehavingTwdTest, PipelinedRequestsCompleteOutOfOrder) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  fake_.reverse_window = 8;  // the fake answers every 8 requests last-first
  Key ns = c->namespace_digest(0);
  std::vector<Future<std::vector<PutReply>>> puts;
  std::vector<PutItem> items;
  Key parent = ns;
  for (uint32_t i = 0; i < 8; ++i) {
    items.push_back(MakePut(*c, parent, 4 * i, 128));
    parent = items.back().ref.key;
    puts.push_back(c->PutAsync({items.back()}));
  }
  for (auto& f : puts) {
    auto r = Await(f, std::chrono::milliseconds(5000));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ((*r)[0].result, PutResult::kStored);
  }
  // Each future got its own answer: lookups of different lengths, answered in reverse.
  std::vector<Future<std::vector<LookupReply>>> looks;
  for (size_t n = 1; n <= 8; ++n) {
    LookupChain chain{ns, {}};
    for (size_t j = 0; j < n; ++j) chain.keys.push_back(items[j].ref.key);
    looks.push_back(c->LookupAsync({{chain}}, false));
  }
  for (size_t n = 1; n <= 8; ++n) {
    auto r = Await(looks[n - 1], std::chrono::milliseconds(5000));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ((*r)[0].prefix, n);
  }
}

TEST_F(ClientTest, ManyThreadsShareOneClient) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (c->Ping().ok()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 400);
}

TEST_F(MisbehavingTwdTest, GarbageFromTwdFailsRequestsWithoutHanging) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  fake_.garbage_after = fake_.requests_seen.load();
  Status s = c->Ping();
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.ToString();
  EXPECT_NE(s.message().find("malformed"), std::string::npos) << s.ToString();
  // Later calls fail at once.
  EXPECT_FALSE(c->Ping(std::chrono::milliseconds(100)).ok());
}

TEST_F(MisbehavingTwdTest, HangUpFailsPendingRequests) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  fake_.hang_up_after = fake_.requests_seen.load();
  Status s = c->Ping();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
}

TEST_F(MisbehavingTwdTest, ConnectionLevelErrorIsReported) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  fake_.fatal_after = fake_.requests_seen.load();
  Status s = c->Ping();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("too many clients"), std::string::npos) << s.ToString();
}

TEST_F(MisbehavingTwdTest, CloseCancelsWaitingRequests) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  fake_.reverse_window = 1000;  // never answers
  auto f = c->LookupAsync({{LookupChain{c->namespace_digest(0), {}}}}, false);
  c->Close();
  auto r = Await(f, std::chrono::milliseconds(1000));
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled) << r.status().ToString();
}

// A synchronous call reads the socket itself when nobody else does; it then completes the
// replies of other requests it reads too, and the reader thread takes over for those still
// owed when it leaves.
TEST_F(MisbehavingTwdTest, SyncCallerReadsRepliesOfOthers) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  fake_.reverse_window = 4;  // the sync ping's answer comes after three async ones
  std::vector<Future<std::vector<LookupReply>>> looks;
  for (int i = 0; i < 3; ++i) {
    looks.push_back(c->LookupAsync({{LookupChain{c->namespace_digest(0), {}}}}, false));
  }
  EXPECT_TRUE(c->Ping().ok());
  for (auto& f : looks) EXPECT_TRUE(Await(f, std::chrono::milliseconds(5000)).ok());
  // Async requests sent after a sync call are still answered (by the reader thread).
  fake_.reverse_window = 0;
  auto later = c->LookupAsync({{LookupChain{c->namespace_digest(0), {}}}}, false);
  EXPECT_TRUE(Await(later, std::chrono::milliseconds(5000)).ok());
  EXPECT_TRUE(c->Ping().ok());
}

TEST_F(MisbehavingTwdTest, CloseCancelsASyncCallerReadingTheSocket) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  fake_.reverse_window = 1000;  // never answers
  Status s;
  std::thread caller([&] { s = c->Ping(std::chrono::milliseconds(60000)); });
  // Whether Close comes before or after the ping is sent, the ping ends cancelled.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  c->Close();
  caller.join();
  EXPECT_EQ(s.code(), StatusCode::kCancelled) << s.ToString();
}

TEST_F(MisbehavingTwdTest, SyncCallHonoursItsTimeout) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  fake_.reverse_window = 1000;  // never answers
  Status s = c->Ping(std::chrono::milliseconds(50));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
}

}  // namespace
}  // namespace tw::client
