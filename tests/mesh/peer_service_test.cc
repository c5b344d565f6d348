// The peer service over real gRPC on 127.0.0.1: PeerServer (home and holder roles) against
// PeerClient and TcpTransport. Faults: a stalling holder (deadline abandon), a dead peer
// (cool-off without a retry storm, counted), refused client certificates (mutual TLS).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fake_chunk_source.h"
#include "fake_clock.h"
#include "tw/mesh/peer_client.h"
#include "tw/mesh/peer_server.h"
#include "tw/mesh/tcp_transport.h"

namespace tw::mesh {
namespace {

using testing::FakeChunkSource;
using testing::Pattern;
using testing::TestKey;
using namespace std::chrono_literals;

struct Harness {
  explicit Harness(PeerTls tls = {}, bool raw_wire = true) : directory(Directory::Options{}) {
    PeerServer::Options o;
    o.raw_wire = raw_wire;
    o.node = "holder";
    o.version = "test";
    o.listen_address = "127.0.0.1";
    o.tls = std::move(tls);
    o.fetch_slice = 64 << 10;  // several messages for a small value
    server = std::move(PeerServer::Start(o, {&directory, &source, {}}).value());
    peer = Peer{"holder", "127.0.0.1", server->port(), 1.0};
  }
  ~Harness() {
    source.Release();
    server->Stop();
  }
  Directory directory;
  FakeChunkSource source;
  std::unique_ptr<PeerServer> server;
  Peer peer;
};

PeerClient::Options ClientOptions(std::chrono::nanoseconds timeout = 2s) {
  PeerClient::Options o;
  o.self = "asker";
  o.call_timeout = timeout;
  return o;
}

// Every PeerServiceTest runs twice: Locate and Fetch on the raw wire (the default), and on
// gRPC (a server without the wire: the requester finds none in Health).
class PeerServiceTest : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Paths, PeerServiceTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "RawWire" : "Grpc"; });

TEST_P(PeerServiceTest, UpdateThenLocateAnswersHoldersPerKey) {
  Harness h({}, GetParam());
  PeerClient client(ClientOptions());
  UpdateBatch b{"n1", {{TestKey(1), UpdateKind::kAnnounce}, {TestKey(2), UpdateKind::kAnnounce}}};
  ASSERT_TRUE(client.Update(h.peer, b, Clock::now() + 5s).ok());
  ASSERT_TRUE(
      client.Update(h.peer, {"n2", {{TestKey(2), UpdateKind::kAnnounce}}}, Clock::now() + 5s).ok());
  ASSERT_TRUE(
      client.Update(h.peer, {"n1", {{TestKey(1), UpdateKind::kWithdraw}}}, Clock::now() + 5s).ok());
  const std::vector<Key> keys = {TestKey(1), TestKey(2), TestKey(3)};
  const PeerClient::LocateCall call{&h.peer, keys};
  auto answers = client.LocateMany(std::span(&call, 1), Clock::now() + 5s);
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_TRUE(answers[0].ok()) << answers[0].status().ToString();
  const auto& holders = *answers[0];
  ASSERT_EQ(holders.size(), 3u);
  EXPECT_TRUE(holders[0].empty());
  EXPECT_EQ(holders[1], (std::vector<std::string>{"n2", "n1"}));
  EXPECT_TRUE(holders[2].empty());
  auto name = client.Health(h.peer, Clock::now() + 5s);
  ASSERT_TRUE(name.ok());
  EXPECT_EQ(*name, "holder");
}

TEST_P(PeerServiceTest, LocateOfManyKeysAndHoldersIsAnsweredInOrder) {
  Harness h({}, GetParam());
  PeerClient client(ClientOptions());
  std::vector<Key> keys;
  for (uint32_t i = 0; i < 600; ++i) keys.push_back(TestKey(1000 + i));
  // Holder n<i % 3> holds key i; n9 holds every fifth key too, announced later (first).
  for (int n = 0; n < 3; ++n) {
    UpdateBatch b{"n" + std::to_string(n), {}};
    for (size_t i = static_cast<size_t>(n); i < keys.size(); i += 3) {
      b.updates.push_back({keys[i], UpdateKind::kAnnounce});
    }
    ASSERT_TRUE(client.Update(h.peer, b, Clock::now() + 5s).ok());
  }
  UpdateBatch late{"n9", {}};
  for (size_t i = 0; i < keys.size(); i += 5)
    late.updates.push_back({keys[i], UpdateKind::kAnnounce});
  ASSERT_TRUE(client.Update(h.peer, late, Clock::now() + 5s).ok());
  keys.push_back(TestKey(99));  // unknown
  const PeerClient::LocateCall call{&h.peer, keys};
  auto answers = client.LocateMany(std::span(&call, 1), Clock::now() + 5s);
  ASSERT_TRUE(answers[0].ok()) << answers[0].status().ToString();
  const auto& holders = *answers[0];
  ASSERT_EQ(holders.size(), keys.size());
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    std::vector<std::string> want;
    if (i % 5 == 0) want.push_back("n9");
    want.push_back("n" + std::to_string(i % 3));
    EXPECT_EQ(holders[i], want) << i;
  }
  EXPECT_TRUE(holders[holders.size() - 1].empty());
}

TEST_P(PeerServiceTest, FetchIsByteExactAcrossManyMessages) {
  Harness h({}, GetParam());
  const FetchSpec spec{TestKey(100), TestKey(7)};
  FakeChunkSource::Chunk c;
  c.segments = {Pattern(300 << 10, 1), Pattern(5, 2), Pattern(0, 3), Pattern(200 << 10, 4)};
  c.lineage = {TestKey(6), "extra", {1, 2, 3}};
  h.source.Add(spec, c);
  PeerClient client(ClientOptions());
  TcpTransport tcp(&client);
  std::vector<std::byte> dest(1 << 20, std::byte{0xee});
  FetchResult r = tcp.Fetch(h.peer, spec, dest, Clock::now() + 5s);
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  EXPECT_EQ(r.segment_sizes, (std::vector<uint64_t>{300 << 10, 5, 0, 200 << 10}));
  ASSERT_EQ(r.bytes, (500u << 10) + 5);
  size_t at = 0;
  for (const auto& s : c.segments) {
    if (!s.empty()) {
      ASSERT_EQ(std::memcmp(dest.data() + at, s.data(), s.size()), 0);
    }
    at += s.size();
  }
  EXPECT_EQ(dest[at], std::byte{0xee});  // nothing past the value
  ASSERT_TRUE(r.lineage.has_value());
  EXPECT_EQ(r.lineage->parent, TestKey(6));
  EXPECT_EQ(r.lineage->extra, "extra");
  EXPECT_EQ(r.lineage->tokens, (std::vector<uint32_t>{1, 2, 3}));
  const auto links = tcp.Links();
  ASSERT_EQ(links.size(), 1u);
  EXPECT_EQ(links[0].fetches, 1u);
  EXPECT_EQ(links[0].bytes_in, r.bytes);
  EXPECT_TRUE(links[0].up);
  const auto served = h.server->GetServed();
  ASSERT_EQ(served.size(), 1u);
  EXPECT_EQ(served[0].node, "asker");
  EXPECT_EQ(served[0].bytes, r.bytes);
}

TEST_P(PeerServiceTest, HolderServesOnlyUnderTheNamespaceStored) {
  Harness h({}, GetParam());
  h.source.Add({TestKey(100), TestKey(7)}, {{Pattern(10, 1)}, {}});
  PeerClient client(ClientOptions());
  std::vector<std::byte> dest(64);
  FetchResult other = client.Fetch(h.peer, {TestKey(101), TestKey(7)}, dest, Clock::now() + 5s);
  EXPECT_EQ(other.miss, MissReason::kAbsent);
  FetchResult absent = client.Fetch(h.peer, {TestKey(100), TestKey(8)}, dest, Clock::now() + 5s);
  EXPECT_EQ(absent.miss, MissReason::kAbsent);
  EXPECT_TRUE(client.Links()[0].up);  // a miss is an answer, not a failure
}

TEST_P(PeerServiceTest, ValueLargerThanDestinationIsInvalidArgumentWithSizes) {
  Harness h({}, GetParam());
  const FetchSpec spec{TestKey(100), TestKey(7)};
  h.source.Add(spec, {{Pattern(100, 1), Pattern(50, 2)}, {}});
  PeerClient client(ClientOptions());
  std::vector<std::byte> dest(149, std::byte{0x11});
  FetchResult r = client.Fetch(h.peer, spec, dest, Clock::now() + 5s);
  EXPECT_EQ(r.miss, MissReason::kIoError);
  EXPECT_EQ(r.error.code(), StatusCode::kInvalidArgument) << r.error.ToString();
  EXPECT_EQ(r.segment_sizes, (std::vector<uint64_t>{100, 50}));
  for (std::byte b : dest) ASSERT_EQ(b, std::byte{0x11});
}

TEST_P(PeerServiceTest, StallingHolderIsAbandonedAtTheDeadlineAndWritesNothingLater) {
  Harness h({}, GetParam());
  const FetchSpec spec{TestKey(100), TestKey(7)};
  h.source.Add(spec, {{Pattern(4096, 1)}, {}});
  h.source.Stall();
  PeerClient client(ClientOptions(10s));
  std::vector<std::byte> dest(8192, std::byte{0x22});
  const auto start = Clock::now();
  FetchResult r = client.Fetch(h.peer, spec, dest, start + 300ms);
  const auto took = Clock::now() - start;
  EXPECT_EQ(r.miss, MissReason::kPeerUnreachable);
  EXPECT_EQ(r.error.code(), StatusCode::kDeadlineExceeded) << r.error.ToString();
  EXPECT_LT(took, 5s);  // returned at its deadline, not when the holder woke up
  // The holder wakes up and sends its bytes to a cancelled stream: nothing lands.
  h.source.WaitStalled(1);
  h.source.Release();
  h.server->Stop(1s);
  for (std::byte b : dest) ASSERT_EQ(b, std::byte{0x22});
  // The caller's short deadline is no fault of the peer's.
  EXPECT_TRUE(client.Links()[0].up);
}

// A port with nothing listening: connecting is refused at once.
uint32_t ClosedPort() {
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

TEST(PeerClientTest, DeadPeerCoolsOffWithoutARetryStorm) {
  testing::FakeClock clock;
  PeerClient::Options o = ClientOptions(2s);
  o.now = clock.Fn();
  o.cooloff_initial = 1s;
  o.cooloff_max = 4s;
  PeerClient client(o);
  const Peer dead{"dead", "127.0.0.1", ClosedPort(), 1.0};
  const std::vector<Key> keys = {TestKey(1)};
  const PeerClient::LocateCall call{&dead, keys};
  std::vector<std::byte> dest(16);

  auto first = client.LocateMany(std::span(&call, 1), Clock::now() + 5s);
  ASSERT_FALSE(first[0].ok());
  EXPECT_EQ(first[0].status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(client.GetStats().calls, 1u);
  // 100 more requests of every kind during the cool-off: none reaches the network.
  for (int i = 0; i < 25; ++i) {
    EXPECT_EQ(client.LocateMany(std::span(&call, 1), Clock::now() + 5s)[0].status().code(),
              StatusCode::kUnavailable);
    EXPECT_EQ(client.Fetch(dead, {TestKey(1), TestKey(2)}, dest, Clock::now() + 5s).miss,
              MissReason::kPeerUnreachable);
    EXPECT_FALSE(client.Update(dead, {"asker", {{TestKey(1)}}}, Clock::now() + 5s).ok());
    EXPECT_FALSE(client.Health(dead, Clock::now() + 5s).ok());
  }
  EXPECT_EQ(client.GetStats().calls, 1u);
  EXPECT_EQ(client.GetStats().fast_fails, 100u);
  ASSERT_EQ(client.Links().size(), 1u);
  EXPECT_FALSE(client.Links()[0].up);
  EXPECT_EQ(client.Links()[0].failures, 1u);
  EXPECT_FALSE(client.Links()[0].last_error.empty());

  // After the cool-off one probe goes out; it fails and the cool-off doubles.
  clock.Advance(1s);
  EXPECT_FALSE(client.Health(dead, Clock::now() + 5s).ok());
  EXPECT_EQ(client.GetStats().calls, 2u);
  clock.Advance(1s);
  EXPECT_FALSE(client.Health(dead, Clock::now() + 5s).ok());
  EXPECT_EQ(client.GetStats().calls, 2u);  // 1 s into a 2 s cool-off
  clock.Advance(1s);
  EXPECT_FALSE(client.Health(dead, Clock::now() + 5s).ok());
  EXPECT_EQ(client.GetStats().calls, 3u);
}

TEST(PeerClientTest, PeerThatComesBackIsUpAfterOneProbe) {
  testing::FakeClock clock;
  PeerClient::Options o = ClientOptions(2s);
  o.now = clock.Fn();
  o.cooloff_initial = 1s;
  PeerClient client(o);
  Harness h;
  const Peer gone{"holder", "127.0.0.1", ClosedPort(), 1.0};
  EXPECT_FALSE(client.Health(gone, Clock::now() + 5s).ok());
  EXPECT_FALSE(client.Links()[0].up);
  clock.Advance(1s);
  // The peers file now names its new port: the channel is re-made and the probe succeeds.
  ASSERT_TRUE(client.Health(h.peer, Clock::now() + 5s).ok());
  EXPECT_TRUE(client.Links()[0].up);
  EXPECT_TRUE(client.Health(h.peer, Clock::now() + 5s).ok());
}

// ---- the raw wire -------------------------------------------------------------------------

// A holder restarted on the same ports: the requester's idle connections to it are dead; the
// next fetch and locate go out again on new ones, and the peer is not marked down.
TEST(PeerClientTest, IdleWireConnectionsOfARestartedPeerAreReplacedNotFailed) {
  auto h = std::make_unique<Harness>();
  ASSERT_NE(h->server->wire_port(), 0u);
  const FetchSpec spec{TestKey(100), TestKey(7)};
  h->source.Add(spec, {{Pattern(100 << 10, 1)}, {}});
  PeerClient client(ClientOptions());
  std::vector<std::byte> dest(200 << 10);
  ASSERT_EQ(client.Fetch(h->peer, spec, dest, Clock::now() + 5s).miss, MissReason::kNone);
  const uint32_t port = h->server->port();
  const uint32_t wire_port = h->server->wire_port();
  h.reset();
  // Same ports again (the kernel hands them back: nothing else binds them meanwhile).
  Directory directory(Directory::Options{});
  FakeChunkSource source;
  source.Add(spec, {{Pattern(100 << 10, 2)}, {}});
  PeerServer::Options o;
  o.node = "holder";
  o.listen_address = "127.0.0.1";
  o.port = port;
  o.wire_port = wire_port;
  auto server = PeerServer::Start(o, {&directory, &source, {}});
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  FetchResult r =
      client.Fetch(Peer{"holder", "127.0.0.1", port, 1.0}, spec, dest, Clock::now() + 5s);
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  EXPECT_EQ(std::memcmp(dest.data(), Pattern(100 << 10, 2).data(), 100 << 10), 0);
  EXPECT_TRUE(client.Links()[0].up);
  EXPECT_EQ(client.Links()[0].failures, 0u);
  source.Release();
  (*server)->Stop();
}

// A connection that is not the wire's protocol is refused and closed; the server goes on.
TEST(PeerServiceTest2, WireRefusesGarbageAndKeepsServing) {
  Harness h;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(h.server->wire_port()));
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const char junk[] = "GET / HTTP/1.1\r\n\r\n";
  ASSERT_EQ(::write(fd, junk, sizeof junk), static_cast<ssize_t>(sizeof junk));
  char buf[64];
  while (::read(fd, buf, sizeof buf) > 0) {
  }  // closed by the server
  ::close(fd);
  h.directory.Apply({"n1", {{TestKey(1), UpdateKind::kAnnounce}}});
  PeerClient client(ClientOptions());
  const std::vector<Key> keys = {TestKey(1)};
  const PeerClient::LocateCall call{&h.peer, keys};
  auto r = client.LocateMany(std::span(&call, 1), Clock::now() + 5s);
  ASSERT_TRUE(r[0].ok()) << r[0].status().ToString();
  EXPECT_EQ((*r[0])[0], (std::vector<std::string>{"n1"}));
}

// ---- mutual TLS ---------------------------------------------------------------------------

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tw-mesh-tls-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    const std::string d = dir_.string();
    const std::string script =
        "set -e; cd '" + d +
        "'; exec >openssl.log 2>&1\n"
        "cat >ext.cnf <<EOF\nsubjectAltName=IP:127.0.0.1,DNS:twd-mesh\nEOF\n"
        "mk_ca() { openssl req -x509 -newkey rsa:2048 -nodes -keyout $1.key -out $1.pem "
        "-days 1 -subj /CN=$1; }\n"
        "mk_cert() { openssl req -newkey rsa:2048 -nodes -keyout $1.key -out $1.csr "
        "-subj /CN=$1; openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key "
        "-CAcreateserial -out $1.pem -days 1 -extfile ext.cnf; }\n"
        "mk_ca ca; mk_ca other; mk_cert node ca; mk_cert stranger other\n";
    ASSERT_EQ(std::system(("bash -c " + Quote(script)).c_str()), 0) << Read(dir_ / "openssl.log");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static std::string Quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  }
  static std::string Read(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  PeerTls Tls(const std::string& ca, const std::string& cert) {
    config::MeshTlsConfig c;
    c.ca = (dir_ / (ca + ".pem")).string();
    c.cert = (dir_ / (cert + ".pem")).string();
    c.key = (dir_ / (cert + ".key")).string();
    return LoadPeerTls(c).value();
  }
  std::filesystem::path dir_;
};

TEST_F(TlsTest, PeersWithCertificatesOfTheMeshCaTalk) {
  Harness h(Tls("ca", "node"));
  PeerClient::Options o = ClientOptions();
  o.tls = Tls("ca", "node");
  PeerClient client(o);
  auto name = client.Health(h.peer, Clock::now() + 5s);
  ASSERT_TRUE(name.ok()) << name.status().ToString();
  EXPECT_EQ(*name, "holder");
  // The raw wire carries no TLS: it is not opened, and Locate and Fetch stay on gRPC.
  EXPECT_EQ(h.server->wire_port(), 0u);
}

TEST_F(TlsTest, ServerNameOverrideChecksTheCertificateName) {
  Harness h(Tls("ca", "node"));
  PeerClient::Options o = ClientOptions();
  o.tls = Tls("ca", "node");
  o.tls.server_name = "twd-mesh";
  PeerClient client(o);
  EXPECT_TRUE(client.Health(h.peer, Clock::now() + 5s).ok());
}

TEST_F(TlsTest, ClientsWithoutAMeshCertificateAreRefused) {
  Harness h(Tls("ca", "node"));
  {
    PeerClient plain(ClientOptions());  // no TLS at all
    EXPECT_FALSE(plain.Health(h.peer, Clock::now() + 5s).ok());
  }
  {
    PeerClient::Options o = ClientOptions();
    o.tls = Tls("ca", "node");
    o.tls.cert_pem.clear();  // trusts the server, presents no certificate
    o.tls.key_pem.clear();
    PeerClient no_cert(o);
    EXPECT_FALSE(no_cert.Health(h.peer, Clock::now() + 5s).ok());
  }
  {
    PeerClient::Options o = ClientOptions();
    o.tls = Tls("ca", "stranger");  // a certificate of another CA
    PeerClient stranger(o);
    EXPECT_FALSE(stranger.Health(h.peer, Clock::now() + 5s).ok());
  }
}

TEST_F(TlsTest, UnreadableOrMissingFilesAreNamed) {
  config::MeshTlsConfig c;
  c.ca = (dir_ / "ca.pem").string();
  c.cert = (dir_ / "missing.pem").string();
  c.key = (dir_ / "node.key").string();
  auto t = LoadPeerTls(c);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("mesh.tls.cert"), std::string::npos);
  c.cert = (dir_ / "ext.cnf").string();
  t = LoadPeerTls(c);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("no PEM"), std::string::npos);
  EXPECT_FALSE(LoadPeerTls(config::MeshTlsConfig{}).value().enabled());
}

}  // namespace
}  // namespace tw::mesh
