// Hostile clients against an in-process twd: malformed and truncated frames, wrong magic or
// version, oversize lengths, unknown ops, ranges outside the arena or overlapping, stray
// descriptors, clients that never read. Each gets an error reply or a closed connection;
// twd keeps serving everyone else.
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "service_fixture.h"

namespace tw::twd::testing {
namespace {

using protocol::Opcode;

class HostileTest : public ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    StartServer();
    bystander_ = std::make_unique<TestClient>(Ready(TestNamespace(), &ns_));
  }
  // The well-behaved client still gets answers.
  void ExpectBystanderServed() {
    auto r = bystander_->Call<pb::PingResponse>(Opcode::kPing, pb::PingRequest());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
  }
  Key ns_;
  std::unique_ptr<TestClient> bystander_;
};

TEST_F(HostileTest, WrongMagicGetsAnErrorAndIsClosed) {
  TestClient c = Connect();
  ASSERT_TRUE(c.SendRaw("GET /metrics HTTP/1.1\r\n\r\n").ok());
  auto r = c.ReadReply();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->header.flags & protocol::kFlagError);
  EXPECT_TRUE(c.WaitClosed());
  ExpectBystanderServed();
}

TEST_F(HostileTest, WrongVersionOversizeAndUnknownOpAreFatal) {
  for (int variant = 0; variant < 3; ++variant) {
    TestClient c = Connect();
    protocol::FrameHeader h;
    h.opcode = Opcode::kPing;
    std::string f = protocol::EncodeFrame(h, "");
    if (variant == 0) f[4] = 9;                             // version
    if (variant == 1) std::memset(f.data() + 20, 0xff, 4);  // 4 GiB body
    if (variant == 2) f[6] = 0x77;                          // opcode
    ASSERT_TRUE(c.SendRaw(f).ok());
    auto r = c.ReadReply();
    ASSERT_TRUE(r.ok()) << variant;
    EXPECT_TRUE(r->header.flags & protocol::kFlagError) << variant;
    EXPECT_TRUE(c.WaitClosed()) << variant;
  }
  ExpectBystanderServed();
}

TEST_F(HostileTest, MalformedBodyIsAnsweredAndTheConnectionSurvives) {
  protocol::FrameHeader h;
  h.opcode = Opcode::kGet;
  h.request_id = 3;
  ASSERT_TRUE(bystander_->SendRaw(protocol::EncodeFrame(h, "\xff\xff\xff\xff garbage")).ok());
  auto r = bystander_->ReadReply();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->header.flags & protocol::kFlagError);
  EXPECT_EQ(r->header.request_id, 3u);
  ExpectBystanderServed();
}

TEST_F(HostileTest, RangesOutsideTheArenaOrOverlapping) {
  pb::GetRequest g;
  auto* item = g.add_items();
  item->mutable_ref()->set_key(std::string(32, 'k'));
  item->mutable_ref()->set_namespace_digest(std::string(ns_.View()));
  auto* e = item->add_ranges();
  e->set_length(100);
  e->set_arena_offset((1 << 20) - 50);
  EXPECT_EQ(bystander_->Call<pb::GetResponse>(Opcode::kGet, g).status().code(),
            StatusCode::kInvalidArgument);
  e->set_arena_offset(0);
  auto* e2 = item->add_ranges();
  e2->set_length(100);
  e2->set_arena_offset(50);
  EXPECT_EQ(bystander_->Call<pb::GetResponse>(Opcode::kGet, g).status().code(),
            StatusCode::kInvalidArgument);
  // A put whose range leaves the arena.
  pb::PutRequest p;
  *p.add_items() = MakePutItem(ns_, ns_, {1, 2, 3, 4}, {64}, (1 << 20) - 10);
  EXPECT_EQ(bystander_->Call<pb::PutResponse>(Opcode::kPut, p).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.chunks(), 0u);
  // A get of a stored chunk with a range past the end of its segment.
  pb::PutRequest ok;
  *ok.add_items() = MakePutItem(ns_, ns_, {1, 2, 3, 4}, {64}, 0);
  ASSERT_EQ(bystander_->Call<pb::PutResponse>(Opcode::kPut, ok)->results(0).result(),
            pb::PUT_RESULT_STORED);
  pb::GetRequest past;
  auto* pi = past.add_items();
  *pi->mutable_ref() = ok.items(0).ref();
  auto* pe = pi->add_ranges();
  pe->set_offset(60);
  pe->set_length(10);
  EXPECT_EQ(bystander_->Call<pb::GetResponse>(Opcode::kGet, past).status().code(),
            StatusCode::kInvalidArgument);
  ExpectBystanderServed();
}

TEST_F(HostileTest, TruncatedFrameThenHangUp) {
  {
    TestClient c = Connect();
    ASSERT_TRUE(c.Hello({}, 0).ok());
    protocol::FrameHeader h;
    h.opcode = Opcode::kPut;
    std::string f = protocol::EncodeFrame(h, std::string(1000, 'x'));
    ASSERT_TRUE(c.SendRaw(std::string_view(f.data(), 500)).ok());
  }  // closed mid-frame
  ExpectBystanderServed();
  // The server drops the half-read connection.
  for (int i = 0; i < 1000 && server_->connections() > 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(server_->connections(), 1u);
}

TEST_F(HostileTest, DescriptorAfterHandshakeIsFatal) {
  TestClient c = Connect();
  ASSERT_TRUE(c.Hello({}, 0).ok());
  int fd = ::memfd_create("stray", MFD_CLOEXEC);
  ASSERT_TRUE(c.SendRaw(protocol::EncodeRequest(Opcode::kPing, 2, pb::PingRequest()), fd).ok());
  ::close(fd);
  auto r = c.ReadReply();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->header.flags & protocol::kFlagError);
  EXPECT_TRUE(c.WaitClosed());
  ExpectBystanderServed();
}

TEST_F(HostileTest, ClientThatNeverReadsDoesNotStallOthers) {
  TestClient c = Connect();
  ASSERT_TRUE(c.Hello({}, 0).ok());
  // Pipeline a large number of stats requests and never read the replies; writes are
  // non-blocking so this thread may be pushed back by the kernel: send from a thread.
  std::string burst;
  for (int i = 0; i < 2000; ++i) {
    burst += protocol::EncodeRequest(Opcode::kStats, i, pb::StatsRequest());
  }
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int round = 0; round < 50 && !done.load(); ++round) {
      if (!protocol::SendWithFd(c.fd(), burst, -1).ok()) break;
    }
  });
  // Everyone else is still served while that client sits on its replies.
  for (int i = 0; i < 20; ++i) ExpectBystanderServed();
  done.store(true);
  ::shutdown(c.fd(), SHUT_RDWR);
  writer.join();
  ExpectBystanderServed();
}

TEST_F(HostileTest, UndeclaredNamespaceIsDenied) {
  pb::LookupRequest l;
  auto* chain = l.add_items()->add_chains();
  chain->set_namespace_digest(std::string(32, 'u'));
  chain->add_keys(std::string(32, 'k'));
  EXPECT_EQ(bystander_->Call<pb::LookupResponse>(Opcode::kLookup, l).status().code(),
            StatusCode::kPermissionDenied);
  ExpectBystanderServed();
}

}  // namespace
}  // namespace tw::twd::testing
