// twd's service over real Unix sockets, in-process, against a FakeStore: handshake, every
// operation, key verification, tenancy, leases, deadlines and the admin socket.
#include <grp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <thread>

#include "service_fixture.h"
#include "service_metrics.h"
#include "socket_codec.h"
#include "tw/common/log.h"
#include "tw/common/metrics.h"
#include "tw/common/strings.h"

namespace tw::twd::testing {
namespace {

using protocol::Opcode;

std::vector<uint64_t> Segs() { return {64, 32}; }

// Fills the arena at `off` with a recognisable pattern for chunk `seed`.
void Fill(TestClient& c, uint64_t off, uint64_t n, uint8_t seed) {
  for (uint64_t i = 0; i < n; ++i) c.arena()[off + i] = static_cast<uint8_t>(seed + i * 7);
}
bool Check(TestClient& c, uint64_t off, uint64_t n, uint8_t seed) {
  for (uint64_t i = 0; i < n; ++i) {
    if (c.arena()[off + i] != static_cast<uint8_t>(seed + i * 7)) return false;
  }
  return true;
}

// Stores chunks 1..n of a chain (tokens 4j..4j+3) and returns their keys.
std::vector<Key> PutChain(TestClient& c, const Key& ns, int n, uint8_t seed = 1) {
  std::vector<Key> keys;
  pb::PutRequest req;
  Key parent = ns;
  for (int j = 0; j < n; ++j) {
    std::vector<uint32_t> tokens = {uint32_t(4 * j), uint32_t(4 * j + 1), uint32_t(4 * j + 2),
                                    uint32_t(4 * j + 3)};
    Fill(c, 1000 * j, 96, static_cast<uint8_t>(seed + j));
    *req.add_items() = MakePutItem(ns, parent, tokens, Segs(), 1000 * j);
    parent = protocol::KeyFromBytes(req.items(j).ref().key());
    keys.push_back(parent);
  }
  auto r = c.Call<pb::PutResponse>(Opcode::kPut, req);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  for (const auto& res : r->results())
    EXPECT_EQ(res.result(), pb::PUT_RESULT_STORED) << res.message();
  return keys;
}

pb::KeyRef Ref(const Key& key, const Key& ns) {
  pb::KeyRef r;
  r.set_key(std::string(key.View()));
  r.set_namespace_digest(std::string(ns.View()));
  return r;
}

TEST_F(ServiceTest, HandshakeNegotiatesAndReturnsDigests) {
  StartServer();
  TestClient c = Connect();
  Namespace ns = TestNamespace();
  auto h = c.Hello({ns}, 1 << 20);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->version(), 1u);
  ASSERT_EQ(h->namespace_digests_size(), 1);
  EXPECT_EQ(protocol::KeyFromBytes(h->namespace_digests(0)), NamespaceDigest(ns));
  EXPECT_EQ(h->limits().max_batch(), 64u);
  EXPECT_TRUE(c.Call<pb::PingResponse>(Opcode::kPing, pb::PingRequest()).ok());
}

TEST_F(ServiceTest, HandshakeRefusals) {
  StartServer();
  {  // no common version
    TestClient c = Connect();
    pb::HelloRequest h;
    h.set_min_version(5);
    h.set_max_version(9);
    auto r = c.Call<pb::HelloResponse>(Opcode::kHello, h);
    EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
    EXPECT_TRUE(c.WaitClosed());
  }
  {  // non-canonical spelling
    TestClient c = Connect();
    Namespace ns = TestNamespace();
    ns.kv_dtype = "bfloat16";
    EXPECT_EQ(c.Hello({ns}, 0).status().code(), StatusCode::kInvalidArgument);
  }
  {  // a request before hello
    TestClient c = Connect();
    EXPECT_EQ(c.Call<pb::PingResponse>(Opcode::kPing, pb::PingRequest()).status().code(),
              StatusCode::kFailedPrecondition);
    EXPECT_TRUE(c.WaitClosed());
  }
  {  // an unsealed memfd: it could shrink under twd
    TestClient c = Connect();
    int fd = ::memfd_create("unsealed", MFD_CLOEXEC);
    ASSERT_EQ(::ftruncate(fd, 4096), 0);
    pb::HelloRequest h;
    h.set_min_version(1);
    h.set_max_version(1);
    h.set_arena_size(4096);
    ASSERT_TRUE(c.SendRaw(protocol::EncodeRequest(Opcode::kHello, 1, h), fd).ok());
    ::close(fd);
    auto r = c.ReadReply();
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->header.flags & protocol::kFlagError);
    EXPECT_TRUE(c.WaitClosed());
  }
  // An arena whose size is not what hello says, or over limits.max_arena_size (16 MiB).
  for (auto [real, claimed] : {std::pair<uint64_t, uint64_t>{4096, 8192},
                               std::pair<uint64_t, uint64_t>{32 << 20, 32 << 20}}) {
    TestClient c = Connect();
    auto memfd = protocol::CreateArenaMemfd("arena", real);
    ASSERT_TRUE(memfd.ok());
    pb::HelloRequest h;
    h.set_min_version(1);
    h.set_max_version(1);
    h.set_arena_size(claimed);
    ASSERT_TRUE(c.SendRaw(protocol::EncodeRequest(Opcode::kHello, 1, h), memfd->get()).ok());
    auto r = c.ReadReply();
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->header.flags & protocol::kFlagError) << claimed;
    EXPECT_TRUE(c.WaitClosed());
  }
  {  // second hello
    TestClient c = Connect();
    ASSERT_TRUE(c.Hello({}, 0).ok());
    EXPECT_EQ(c.Hello({}, 0).status().code(), StatusCode::kFailedPrecondition);
  }
}

TEST_F(ServiceTest, PutLookupGetExistsDeleteStats) {
  StartServer();
  Key ns;
  TestClient c = Ready(TestNamespace(), &ns);
  std::vector<Key> keys = PutChain(c, ns, 3);

  pb::LookupRequest lr;
  auto* chain = lr.add_items()->add_chains();
  chain->set_namespace_digest(std::string(ns.View()));
  for (const Key& k : keys) chain->add_keys(std::string(k.View()));
  chain->add_keys(std::string(32, 'z'));  // a fourth chunk that is not stored
  auto l = c.Call<pb::LookupResponse>(Opcode::kLookup, lr);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->results(0).prefix(), 3u);
  EXPECT_EQ(l->results(0).miss(), pb::MISS_REASON_ABSENT);
  ASSERT_EQ(l->results(0).chains(0).tiers_size(), 3);
  EXPECT_EQ(l->results(0).chains(0).tiers(0), pb::TIER_DRAM);

  // The same chain with its keys in the arena (version 3; read in place: no tenants, no
  // lease). Any version may use the form; libtwclient sends it only to a version-3 twd.
  const uint64_t keys_at = c.arena_size() - 4096;
  std::vector<Key> all = keys;
  all.push_back(Key{});
  std::memcpy(c.arena() + keys_at, all.data(), all.size() * sizeof(Key));
  pb::LookupRequest in_arena;
  auto* ac = in_arena.add_items()->add_chains();
  ac->set_namespace_digest(std::string(ns.View()));
  ac->set_keys_arena_offset(keys_at);
  ac->set_keys_count(static_cast<uint32_t>(all.size()));
  auto la = c.Call<pb::LookupResponse>(Opcode::kLookup, in_arena);
  ASSERT_TRUE(la.ok()) << la.status().ToString();
  EXPECT_EQ(la->results(0).prefix(), 3u);
  EXPECT_EQ(la->results(0).miss(), pb::MISS_REASON_ABSENT);
  EXPECT_EQ(la->results(0).chains(0).tiers_size(), 3);

  // Clear the arena, then get chunk 2 whole and chunk 3 by a scatter list.
  std::memset(c.arena(), 0, 1 << 20);
  pb::GetRequest gr;
  auto* whole = gr.add_items();
  *whole->mutable_ref() = Ref(keys[1], ns);
  whole->set_arena_offset(1000);
  whole->set_arena_length(96);
  auto* part = gr.add_items();
  *part->mutable_ref() = Ref(keys[2], ns);
  auto* e = part->add_ranges();  // segment 1 (32 bytes at offset 64 of the value)
  e->set_segment(1);
  e->set_length(32);
  e->set_arena_offset(2064);
  auto g = c.Call<pb::GetResponse>(Opcode::kGet, gr);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->results(0).miss(), pb::MISS_REASON_NONE);
  EXPECT_EQ(g->results(0).bytes(), 96u);
  EXPECT_EQ(g->results(0).tier(), pb::TIER_DRAM);
  EXPECT_TRUE(Check(c, 1000, 96, 2));
  EXPECT_EQ(g->results(1).bytes(), 32u);
  for (int i = 0; i < 32; ++i) {
    ASSERT_EQ(c.arena()[2064 + i], static_cast<uint8_t>(3 + (64 + i) * 7)) << i;
  }
  EXPECT_EQ(c.arena()[2000], 0);  // nothing outside the named range

  pb::ExistsRequest er;
  *er.add_items() = Ref(keys[0], ns);
  *er.add_items() = Ref(Key{}, ns);
  auto ex = c.Call<pb::ExistsResponse>(Opcode::kExists, er);
  ASSERT_TRUE(ex.ok());
  EXPECT_TRUE(ex->results(0).exists());
  EXPECT_EQ(ex->results(0).value_size(), 96u);
  EXPECT_FALSE(ex->results(1).exists());

  pb::DeleteRequest dr;
  *dr.add_items() = Ref(keys[2], ns);
  *dr.add_items() = Ref(keys[2], ns);
  auto del = c.Call<pb::DeleteResponse>(Opcode::kDelete, dr);
  ASSERT_TRUE(del.ok());
  EXPECT_TRUE(del->deleted(0));
  EXPECT_FALSE(del->deleted(1));
  g = c.Call<pb::GetResponse>(Opcode::kGet, gr);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->results(1).miss(), pb::MISS_REASON_ABSENT);

  auto st = c.Call<pb::StatsResponse>(Opcode::kStats, pb::StatsRequest());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->connected_clients(), 1u);
  EXPECT_EQ(st->puts().at("stored"), 3u);
  EXPECT_EQ(st->arena_size(), uint64_t{1} << 20);

  // Putting the same chunk again says exists.
  pb::PutRequest again;
  *again.add_items() = MakePutItem(ns, ns, {0, 1, 2, 3}, Segs(), 0);
  auto p = c.Call<pb::PutResponse>(Opcode::kPut, again);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->results(0).result(), pb::PUT_RESULT_EXISTS);
}

TEST_F(ServiceTest, PutKeyVerification) {
  StartServer();
  Key ns, other_ns;
  TestClient c = Ready(TestNamespace(), &ns);
  TestClient o = Ready(TestNamespace("", 4, "tp=1/2,pp=0/1"), &other_ns);
  std::vector<Key> other = PutChain(o, other_ns, 1);

  pb::PutRequest r;
  pb::PutItem bad_key = MakePutItem(ns, ns, {1, 2, 3, 4}, Segs(), 0);
  bad_key.mutable_ref()->set_key(std::string(32, 'x'));
  *r.add_items() = bad_key;
  *r.add_items() = MakePutItem(ns, ns, {1, 2, 3}, Segs(), 200);  // 3 tokens, chunk_tokens 4
  // Grafting onto another namespace's chunk: the key is right, the parent is foreign.
  *r.add_items() = MakePutItem(ns, other[0], {5, 6, 7, 8}, Segs(), 400);
  // A parent earlier in the same request is fine.
  *r.add_items() = MakePutItem(ns, ns, {9, 9, 9, 9}, Segs(), 600);
  *r.add_items() =
      MakePutItem(ns, protocol::KeyFromBytes(r.items(3).ref().key()), {1, 1, 1, 1}, Segs(), 800);
  auto p = c.Call<pb::PutResponse>(Opcode::kPut, r);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->results(0).result(), pb::PUT_RESULT_INVALID);
  EXPECT_EQ(p->results(1).result(), pb::PUT_RESULT_INVALID);
  EXPECT_EQ(p->results(2).result(), pb::PUT_RESULT_INVALID);
  EXPECT_EQ(p->results(3).result(), pb::PUT_RESULT_STORED);
  EXPECT_EQ(p->results(4).result(), pb::PUT_RESULT_STORED);
  EXPECT_EQ(store_.chunks(), 3u);
}

TEST_F(ServiceTest, PutResultsFromTheStoreAndDeadlines) {
  StartServer();
  Key ns;
  TestClient c = Ready(TestNamespace(), &ns);
  store_.force_put = store::PutResult::kQuota;
  pb::PutRequest r;
  *r.add_items() = MakePutItem(ns, ns, {1, 2, 3, 4}, Segs(), 0);
  auto p = c.Call<pb::PutResponse>(Opcode::kPut, r);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->results(0).result(), pb::PUT_RESULT_QUOTA);
  store_.force_put.reset();
  std::vector<Key> keys = PutChain(c, ns, 1);

  // A get whose deadline passes while the store is slow is a deadline miss.
  store_.get_delay = std::chrono::milliseconds(20);
  pb::GetRequest g;
  g.set_timeout_us(1);
  auto* item = g.add_items();
  *item->mutable_ref() = Ref(keys[0], ns);
  item->set_arena_length(96);
  auto res = c.Call<pb::GetResponse>(Opcode::kGet, g);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->results(0).miss(), pb::MISS_REASON_DEADLINE);
  store_.get_delay = std::chrono::milliseconds(0);
}

TEST_F(ServiceTest, TensorParallelLookupAnswersTheCommonPrefix) {
  StartServer();
  TestClient c = Connect();
  auto h = c.Hello({TestNamespace("", 4, "tp=0/2,pp=0/1"), TestNamespace("", 4, "tp=1/2,pp=0/1")},
                   1 << 20);
  ASSERT_TRUE(h.ok());
  Key ns0 = protocol::KeyFromBytes(h->namespace_digests(0));
  Key ns1 = protocol::KeyFromBytes(h->namespace_digests(1));
  std::vector<Key> a = PutChain(c, ns0, 3);
  std::vector<Key> b = PutChain(c, ns1, 2);
  pb::LookupRequest lr;
  auto* item = lr.add_items();
  auto* c0 = item->add_chains();
  c0->set_namespace_digest(std::string(ns0.View()));
  for (const Key& k : a) c0->add_keys(std::string(k.View()));
  auto* c1 = item->add_chains();
  c1->set_namespace_digest(std::string(ns1.View()));
  for (const Key& k : b) c1->add_keys(std::string(k.View()));
  c1->add_keys(std::string(32, 'q'));
  auto l = c.Call<pb::LookupResponse>(Opcode::kLookup, lr);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->results(0).prefix(), 2u);
  EXPECT_EQ(l->results(0).chains(0).tiers_size(), 2);
  EXPECT_EQ(l->results(0).chains(1).tiers_size(), 2);
  EXPECT_EQ(l->results(0).miss(), pb::MISS_REASON_ABSENT);
}

TEST_F(ServiceTest, TenantsReachOnlyTheirNamespaces) {
  OnlyTenantAlpha({::getuid()});
  StartServer();
  {
    TestClient c = Connect();
    EXPECT_EQ(c.Hello({TestNamespace("beta")}, 0).status().code(), StatusCode::kPermissionDenied);
  }
  Key ns;
  TestClient c = Ready(TestNamespace("alpha"), &ns);
  std::vector<Key> keys = PutChain(c, ns, 1);
  // An undeclared namespace fails the request.
  pb::ExistsRequest er;
  *er.add_items() = Ref(keys[0], NamespaceDigest(TestNamespace("beta")));
  EXPECT_EQ(c.Call<pb::ExistsResponse>(Opcode::kExists, er).status().code(),
            StatusCode::kPermissionDenied);
  // A declared namespace cannot see a chunk stored under another one.
  pb::DeclareNamespacesRequest dr;
  *dr.add_namespaces() = protocol::ToProto(TestNamespace("alpha", 8));
  auto d = c.Call<pb::DeclareNamespacesResponse>(Opcode::kDeclareNamespaces, dr);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const Key ns8 = protocol::KeyFromBytes(d->namespace_digests(0));
  pb::GetRequest g;
  auto* item = g.add_items();
  *item->mutable_ref() = Ref(keys[0], ns8);
  item->set_arena_length(96);
  auto res = c.Call<pb::GetResponse>(Opcode::kGet, g);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->results(0).miss(), pb::MISS_REASON_ABSENT);
  pb::DeleteRequest del;
  *del.add_items() = Ref(keys[0], ns8);
  EXPECT_FALSE(c.Call<pb::DeleteResponse>(Opcode::kDelete, del)->deleted(0));
  EXPECT_EQ(store_.chunks(), 1u);
}

TEST_F(ServiceTest, TenantsMapSupplementaryGroups) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root (CAP_SETGID) to give a test thread a supplementary group";
  }
  constexpr gid_t kGroup = 31337;
  ASSERT_NE(::getgid(), kGroup);
  OnlyTenantAlpha({}, {kGroup});
  StartServer();
  // Without the group this uid maps to no tenant; the error names what twd saw.
  {
    TestClient c = Connect();
    auto h = c.Hello({TestNamespace("alpha")}, 0);
    EXPECT_EQ(h.status().code(), StatusCode::kPermissionDenied);
    EXPECT_NE(h.status().message().find("groups ["), std::string::npos) << h.status().ToString();
  }
  // The raw setgroups system call changes only the calling thread's credentials (glibc's
  // wrapper would change every thread's), and connect() records the calling thread's.
  Status hello;
  std::string tenant;
  std::thread member([&] {
    const gid_t groups[] = {kGroup};
    if (::syscall(SYS_setgroups, 1, groups) != 0) {
      hello = ErrnoStatus(errno, "setgroups");
      return;
    }
    TestClient c = Connect();
    auto h = c.Hello({TestNamespace("alpha")}, 0);
    hello = h.status();
    if (h.ok()) tenant = h->tenant();
  });
  member.join();
  EXPECT_TRUE(hello.ok()) << hello.ToString();
  EXPECT_EQ(tenant, "alpha");
}

// Protocol versions 2 and 3: a chain's keys packed in one field, or lying in the client's
// arena, answer exactly as the repeated form does — with tenants configured and with leases,
// which twd also answers on its reactor.
TEST_F(ServiceTest, PackedAndArenaLookupKeysWithTenantsAndLeases) {
  OnlyTenantAlpha({::getuid()});
  StartServer();
  TestClient c = Connect();
  auto h = c.Hello({TestNamespace("alpha"), TestNamespace("alpha", 8)}, 1 << 20,
                   protocol::kMaxProtocolVersion);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->version(), protocol::kArenaKeysVersion);
  const Key ns = protocol::KeyFromBytes(h->namespace_digests(0));
  const Key ns8 = protocol::KeyFromBytes(h->namespace_digests(1));
  std::vector<Key> keys = PutChain(c, ns, 3);
  keys.push_back(Key{});  // a fourth chunk that is not stored
  // The arena form's keys go past the values PutChain wrote.
  const uint64_t keys_at = c.arena_size() - 4096;

  enum Form { kRepeated, kPacked, kArena };
  auto lookup = [&](const Key& digest, Form form, bool lease) {
    pb::LookupRequest lr;
    lr.set_take_lease(lease);
    auto* chain = lr.add_items()->add_chains();
    chain->set_namespace_digest(std::string(digest.View()));
    if (form == kArena) {
      std::memcpy(c.arena() + keys_at, keys.data(), keys.size() * sizeof(Key));
      chain->set_keys_arena_offset(keys_at);
      chain->set_keys_count(static_cast<uint32_t>(keys.size()));
    } else {
      protocol::SetChainKeys(keys, form == kPacked, chain);
    }
    return c.Call<pb::LookupResponse>(Opcode::kLookup, lr);
  };
  for (Form packed : {kRepeated, kPacked, kArena}) {
    for (bool lease : {false, true}) {
      auto l = lookup(ns, packed, lease);
      ASSERT_TRUE(l.ok()) << l.status().ToString();
      EXPECT_EQ(l->results(0).prefix(), 3u) << packed << lease;
      EXPECT_EQ(l->results(0).miss(), pb::MISS_REASON_ABSENT);
      // A version-2 session gets the tiers packed, one byte per chunk.
      EXPECT_EQ(l->results(0).chains(0).tiers_size(), 0);
      EXPECT_EQ(l->results(0).chains(0).packed_tiers(), std::string(3, char(pb::TIER_DRAM)));
      EXPECT_EQ(l->results(0).lease() != 0, lease);
      // The same keys under another namespace of the tenant are not visible.
      auto other = lookup(ns8, packed, lease);
      ASSERT_TRUE(other.ok()) << other.status().ToString();
      EXPECT_EQ(other->results(0).prefix(), 0u);
      EXPECT_EQ(other->results(0).lease(), 0u);
    }
  }
  // Hostile arena keys (outside the arena) and packed keys are answered with an error; the
  // connection stays usable.
  pb::LookupRequest bad;
  auto* chain = bad.add_items()->add_chains();
  chain->set_namespace_digest(std::string(ns.View()));
  chain->set_keys_arena_offset(c.arena_size() - 32);
  chain->set_keys_count(2);
  EXPECT_EQ(c.Call<pb::LookupResponse>(Opcode::kLookup, bad).status().code(),
            StatusCode::kInvalidArgument);
  chain->clear_keys_arena_offset();
  chain->clear_keys_count();
  chain->set_packed_keys(std::string(32 * 2 + 5, 'k'));
  EXPECT_EQ(c.Call<pb::LookupResponse>(Opcode::kLookup, bad).status().code(),
            StatusCode::kInvalidArgument);
  // More keys than twd answers on its reactor: a worker answers the same way.
  chain->set_packed_keys(std::string(32 * (SocketCodec::kInlineLookupKeys + 1), 'k'));
  auto big = c.Call<pb::LookupResponse>(Opcode::kLookup, bad);
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  EXPECT_EQ(big->results(0).prefix(), 0u);
  EXPECT_EQ(big->results(0).miss(), pb::MISS_REASON_ABSENT);
  // Past the protocol's chain limit: refused.
  chain->set_packed_keys(std::string(32 * (protocol::MessageLimits().max_chain + 1), 'k'));
  EXPECT_EQ(c.Call<pb::LookupResponse>(Opcode::kLookup, bad).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_TRUE(c.Call<pb::PingResponse>(Opcode::kPing, pb::PingRequest()).ok());
  // Version 1 still negotiates, and its repeated form still works.
  TestClient old = Connect();
  auto h1 = old.Hello({TestNamespace("alpha")}, 0);
  ASSERT_TRUE(h1.ok()) << h1.status().ToString();
  EXPECT_EQ(h1->version(), 1u);
}

TEST_F(ServiceTest, LeasesAreSharedByUidCappedAndExpire) {
  config_.leases.max_per_client = 1;
  StartServer();
  Key ns;
  TestClient c = Ready(TestNamespace(), &ns);
  std::vector<Key> keys = PutChain(c, ns, 2);
  pb::LookupRequest lr;
  lr.set_take_lease(true);
  auto* chain = lr.add_items()->add_chains();
  chain->set_namespace_digest(std::string(ns.View()));
  for (const Key& k : keys) chain->add_keys(std::string(k.View()));
  auto l = c.Call<pb::LookupResponse>(Opcode::kLookup, lr);
  ASSERT_TRUE(l.ok());
  const uint64_t lease = l->results(0).lease();
  EXPECT_NE(lease, 0u);
  EXPECT_EQ(store_.live_leases(), 1u);
  // At the cap: answered, without a lease, and the store lease is given back.
  auto l2 = c.Call<pb::LookupResponse>(Opcode::kLookup, lr);
  ASSERT_TRUE(l2.ok());
  EXPECT_EQ(l2->results(0).prefix(), 2u);
  EXPECT_EQ(l2->results(0).lease(), 0u);
  EXPECT_EQ(store_.live_leases(), 1u);
  // Another connection of the same uid uses and releases it.
  Key ns_again;
  TestClient w = Ready(TestNamespace(), &ns_again);
  pb::GetRequest g;
  auto* item = g.add_items();
  *item->mutable_ref() = Ref(keys[1], ns);
  item->set_arena_length(96);
  item->set_lease(lease);
  auto got = w.Call<pb::GetResponse>(Opcode::kGet, g);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->results(0).miss(), pb::MISS_REASON_NONE);
  pb::ReleaseLeasesRequest rel;
  rel.add_leases(lease);
  rel.add_leases(12345);
  auto r = w.Call<pb::ReleaseLeasesResponse>(Opcode::kReleaseLeases, rel);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->released(), 1u);
  EXPECT_EQ(store_.live_leases(), 0u);
  // Expiry frees the slot (driven directly: no test waits on a clock).
  l = c.Call<pb::LookupResponse>(Opcode::kLookup, lr);
  ASSERT_NE(l->results(0).lease(), 0u);
  EXPECT_EQ(service_->leases().Expire(std::chrono::steady_clock::now() + std::chrono::hours(1)),
            1u);
  EXPECT_EQ(store_.live_leases(), 0u);
}

TEST_F(ServiceTest, AdminSocketNamespacesExportEvict) {
  StartServer();
  struct stat st;
  ASSERT_EQ(::stat(config_.admin_socket.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(config_.socket.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);

  Key ns;
  TestClient c = Ready(TestNamespace(), &ns);
  std::vector<Key> keys = PutChain(c, ns, 3);
  // Admin ops are refused on the client socket.
  EXPECT_EQ(c.Call<pb::NamespacesResponse>(Opcode::kAdminNamespaces, pb::NamespacesRequest())
                .status()
                .code(),
            StatusCode::kPermissionDenied);

  TestClient a = Connect(/*admin=*/true);
  auto n = a.Call<pb::NamespacesResponse>(Opcode::kAdminNamespaces, pb::NamespacesRequest());
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  ASSERT_EQ(n->namespaces_size(), 1);
  EXPECT_EQ(n->namespaces(0).chunks(), 3u);
  EXPECT_TRUE(n->namespaces(0).fields_known());
  EXPECT_EQ(n->namespaces(0).fields().model(), "test/model");

  auto ex = a.Call<pb::ExportResponse>(Opcode::kAdminExport, pb::ExportRequest());
  ASSERT_TRUE(ex.ok());
  ASSERT_EQ(ex->chunks_size(), 3);
  for (const auto& chunk : ex->chunks()) {
    EXPECT_EQ(chunk.tokens_size(), 4);
    EXPECT_EQ(chunk.value_size(), 96u);
    EXPECT_EQ(ChunkKey(protocol::KeyFromBytes(chunk.parent()), {},
                       std::vector<uint32_t>(chunk.tokens().begin(), chunk.tokens().end())),
              protocol::KeyFromBytes(chunk.key()));
  }

  pb::EvictNamespaceRequest ev;
  ev.set_namespace_digest(std::string(ns.View()));
  auto e = a.Call<pb::EvictNamespaceResponse>(Opcode::kAdminEvictNamespace, ev);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->evicted(), 3u);
  // The miss now says evicted.
  pb::GetRequest g;
  auto* item = g.add_items();
  *item->mutable_ref() = Ref(keys[0], ns);
  item->set_arena_length(96);
  auto res = c.Call<pb::GetResponse>(Opcode::kGet, g);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->results(0).miss(), pb::MISS_REASON_EVICTED);
}

// Every admin operation leaves one audit line — who (uid, gid, pid), what, on what, with which
// result — whatever the log level; so does an admin operation tried on the client socket.
TEST_F(ServiceTest, AdminOperationsAreAudited) {
  std::string sink;
  log::SetSinkForTest(&sink);
  log::SetLevel(log::Level::kError);  // audit lines are never filtered
  StartServer();
  Key ns;
  TestClient c = Ready(TestNamespace(), &ns);
  PutChain(c, ns, 3);
  EXPECT_FALSE(
      c.Call<pb::NamespacesResponse>(Opcode::kAdminNamespaces, pb::NamespacesRequest()).ok());
  TestClient a = Connect(/*admin=*/true);
  ASSERT_TRUE(
      a.Call<pb::NamespacesResponse>(Opcode::kAdminNamespaces, pb::NamespacesRequest()).ok());
  pb::ExportRequest xr;
  xr.set_namespace_digest(std::string(ns.View()));
  auto ex = a.Call<pb::ExportResponse>(Opcode::kAdminExport, xr);
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ(ex->chunks_size(), 3);
  pb::EvictNamespaceRequest ev;
  ev.set_namespace_digest(std::string(ns.View()));
  auto e = a.Call<pb::EvictNamespaceResponse>(Opcode::kAdminEvictNamespace, ev);
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE(a.Call<pb::PingResponse>(Opcode::kPing, pb::PingRequest()).ok());
  StopServer();  // no server thread writes to the sink from here on
  log::SetLevel(log::Level::kInfo);
  log::SetSinkForTest(nullptr);

  std::vector<std::string> audit;
  for (std::string_view line : Split(sink, '\n')) {
    if (line.find(" AUDIT msg=\"admin operation\"") != std::string_view::npos) {
      audit.emplace_back(line);
    }
  }
  ASSERT_EQ(audit.size(), 4u) << sink;  // PING is not audited
  const std::string who = StrCat(" uid=", ::getuid(), " gid=", ::getgid(), " pid=", ::getpid());
  for (const std::string& line : audit) EXPECT_NE(line.find(who), std::string::npos) << line;
  EXPECT_NE(audit[0].find("op=admin_namespaces socket=client"), std::string::npos) << audit[0];
  EXPECT_NE(audit[0].find("result=\"PERMISSION_DENIED: "), std::string::npos) << audit[0];
  EXPECT_NE(audit[1].find("op=admin_namespaces socket=admin"), std::string::npos) << audit[1];
  EXPECT_NE(audit[1].find("result=ok count=1"), std::string::npos) << audit[1];
  EXPECT_NE(audit[2].find(StrCat("op=admin_export socket=admin")), std::string::npos);
  EXPECT_NE(audit[2].find(StrCat("target=\"namespace=", ns.Hex(), "\" result=ok count=3")),
            std::string::npos)
      << audit[2];
  EXPECT_NE(audit[3].find(StrCat("op=admin_evict_namespace socket=admin")), std::string::npos);
  EXPECT_NE(audit[3].find(StrCat("target=\"namespace=", ns.Hex(), "\" result=ok count=3")),
            std::string::npos)
      << audit[3];
}

TEST_F(ServiceTest, ExportStreamsInFramesWithMore) {
  StartServer();
  Key ns;
  TestClient c = Ready(TestNamespace(), &ns);
  // 1100 first chunks (distinct tokens), in batches of 50.
  for (int b = 0; b < 22; ++b) {
    pb::PutRequest r;
    for (int i = 0; i < 50; ++i) {
      const uint32_t t = static_cast<uint32_t>(b * 50 + i);
      *r.add_items() = MakePutItem(ns, ns, {t, t, t, t}, {8}, 64 * i);
    }
    auto p = c.Call<pb::PutResponse>(Opcode::kPut, r);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
  }
  TestClient a = Connect(true);
  ASSERT_TRUE(
      a.SendRaw(protocol::EncodeRequest(Opcode::kAdminExport, 5, pb::ExportRequest())).ok());
  int frames = 0, chunks = 0;
  for (;;) {
    auto r = a.ReadReply();
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->header.request_id, 5u);
    pb::ExportResponse e;
    ASSERT_TRUE(protocol::ParseBody(r->body, &e).ok());
    ++frames;
    chunks += e.chunks_size();
    if (!(r->header.flags & protocol::kFlagMore)) break;
  }
  EXPECT_EQ(frames, 2);
  EXPECT_EQ(chunks, 1100);
}

TEST_F(ServiceTest, LiveSocketRefusedStaleSocketReplaced) {
  StartServer();
  // A second server on the same path is refused while the first lives.
  ServiceCore other(config_, &store_);
  ServerOptions o;
  o.socket_path = config_.socket.path;
  auto second = Server::Start(o, &other);
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  StopServer();
  // A socket file left behind (no lock holder) is replaced.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, config_.socket.path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(fd);
  StartServer();
  TestClient c = Connect();
  EXPECT_TRUE(c.Hello({}, 0).ok());
}

TEST_F(ServiceTest, PipelinedRequestsUnderTheInflightCapAndHalfClose) {
  config_.limits.max_inflight_per_client = 2;
  StartServer();
  Key ns;
  TestClient c = Ready(TestNamespace(), &ns);
  std::vector<Key> keys = PutChain(c, ns, 1);
  store_.get_delay = std::chrono::milliseconds(2);
  pb::GetRequest g;
  auto* item = g.add_items();
  *item->mutable_ref() = Ref(keys[0], ns);
  item->set_arena_length(96);
  std::string burst;
  for (uint64_t id = 100; id < 120; ++id) burst += protocol::EncodeRequest(Opcode::kGet, id, g);
  ASSERT_TRUE(c.SendRaw(burst).ok());
  // Half-close: twd still answers everything already sent.
  ASSERT_EQ(::shutdown(c.fd(), SHUT_WR), 0);
  std::set<uint64_t> ids;
  for (int i = 0; i < 20; ++i) {
    auto r = c.ReadReply();
    ASSERT_TRUE(r.ok()) << i << " " << r.status().ToString();
    EXPECT_FALSE(r->header.flags & protocol::kFlagError);
    ids.insert(r->header.request_id);
  }
  EXPECT_EQ(ids.size(), 20u);
  EXPECT_EQ(*ids.begin(), 100u);
  EXPECT_TRUE(c.WaitClosed());
  store_.get_delay = std::chrono::milliseconds(0);
}

TEST_F(ServiceTest, MetricsCountHitsMissesPutsAndBoundNamespaceLabels) {
  StartServer();
  Key ns;
  TestClient c = Ready(TestNamespace("", 4, "tp=0/4,pp=0/1"), &ns);
  std::vector<Key> keys = PutChain(c, ns, 1);
  pb::GetRequest g;
  for (const Key& k : {keys[0], Key{}}) {
    auto* item = g.add_items();
    *item->mutable_ref() = Ref(k, ns);
    item->set_arena_length(96);
    item->set_arena_offset(g.items_size() * 4096);
  }
  ASSERT_TRUE(c.Call<pb::GetResponse>(Opcode::kGet, g).ok());
  const std::string label = ServiceMetrics::Get().NamespaceLabel(ns);
  const std::string text = metrics::RenderText();
  for (const std::string& want :
       {"tokenwarehouse_get_hits_total{namespace=\"" + label + "\",tier=\"dram\"}",
        "tokenwarehouse_get_misses_total{namespace=\"" + label + "\",reason=\"absent\"}",
        "tokenwarehouse_puts_total{namespace=\"" + label + "\",result=\"stored\"}",
        std::string("tokenwarehouse_tokens_served_total"),
        std::string("tokenwarehouse_request_duration_seconds_count{op=\"get\"}"),
        std::string("tokenwarehouse_connected_clients")}) {
    EXPECT_NE(text.find(want), std::string::npos) << want;
  }
  // However many namespaces come by, at most max_namespace_labels get their own label.
  std::set<std::string> labels;
  for (int i = 0; i < 200; ++i) {
    Key k;
    k.bytes[0] = static_cast<uint8_t>(i);
    k.bytes[1] = 0xee;
    labels.insert(ServiceMetrics::Get().NamespaceLabel(k));
  }
  EXPECT_LE(labels.size(), config_.metrics.max_namespace_labels + 1);
  EXPECT_TRUE(labels.contains("other"));
}

TEST_F(ServiceTest, SocketModeAndGroup) {
  struct group* gr = ::getgrnam("nogroup");
  if (gr == nullptr) GTEST_SKIP() << "needs a group named nogroup";
  const gid_t gid = gr->gr_gid;
  service_ = std::make_unique<ServiceCore>(config_, &store_);
  ServerOptions o;
  o.socket_path = config_.socket.path;
  o.socket_mode = 0606;
  o.socket_group = "nogroup";
  auto s = Server::Start(o, service_.get());
  if (!s.ok() && s.status().code() == StatusCode::kPermissionDenied) {
    GTEST_SKIP() << "cannot chown to nogroup here: " << s.status().ToString();
  }
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  server_ = std::move(*s);
  struct stat st;
  ASSERT_EQ(::stat(config_.socket.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0606u);
  EXPECT_EQ(st.st_gid, gid);
  o.socket_path = dir_ + "/other.sock";
  o.socket_group = "no-such-group-here";
  EXPECT_EQ(Server::Start(o, service_.get()).status().code(), StatusCode::kNotFound);
}

TEST_F(ServiceTest, ConcurrentClientsEachReadTheirOwnBytes) {
  StartServer();
  constexpr int kClients = 8, kChunks = 16;
  std::vector<std::thread> threads;
  std::atomic<int> verified{0};
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      Key ns;
      TestClient c = Ready(TestNamespace("", 4, StrCat("tp=", t, "/8,pp=0/1")), &ns);
      std::vector<Key> keys = PutChain(c, ns, kChunks, static_cast<uint8_t>(t * 31));
      for (int round = 0; round < 5; ++round) {
        std::memset(c.arena() + 100000, 0, 96 * kChunks);
        pb::GetRequest g;
        for (int j = 0; j < kChunks; ++j) {
          auto* item = g.add_items();
          *item->mutable_ref() = Ref(keys[j], ns);
          item->set_arena_offset(100000 + 96 * j);
          item->set_arena_length(96);
        }
        auto r = c.Call<pb::GetResponse>(Opcode::kGet, g);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        for (int j = 0; j < kChunks; ++j) {
          ASSERT_EQ(r->results(j).miss(), pb::MISS_REASON_NONE);
          ASSERT_TRUE(Check(c, 100000 + 96 * j, 96, static_cast<uint8_t>(t * 31 + j)));
        }
        verified.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(verified.load(), kClients * 5);
  EXPECT_EQ(store_.chunks(), static_cast<size_t>(kClients * kChunks));
}

TEST_F(ServiceTest, MaxClients) {
  config_.limits.max_clients = 2;
  StartServer();
  TestClient a = Connect(), b = Connect();
  ASSERT_TRUE(a.Hello({}, 0).ok());
  ASSERT_TRUE(b.Hello({}, 0).ok());
  TestClient c = Connect();
  auto r = c.ReadReply();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->header.flags & protocol::kFlagError);
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_TRUE(a.Call<pb::PingResponse>(Opcode::kPing, pb::PingRequest()).ok());
}

}  // namespace
}  // namespace tw::twd::testing
