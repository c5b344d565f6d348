// The real twd binary over the real storage engine: chunks put with disk and memory
// durability survive a SIGTERM and a restart and come back byte for byte; a second twd on
// the same socket and data path is refused.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "process.h"
#include "test_client.h"

namespace tw::twd::testing {
namespace {

using protocol::Opcode;

class TwdBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/twdbin.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::filesystem::create_directory(dir_ + "/data");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  Process Start() {
    log_ = dir_ + "/log" + std::to_string(++starts_);
    Process p = Process::Spawn(
        {std::string(TW_BINARY_DIR) + "/bin/twd", "--socket", dir_ + "/twd.sock", "--admin-socket",
         dir_ + "/admin.sock", "--data-dir", dir_ + "/data", "--dram-capacity", "64MiB",
         "--nvme-capacity", "256MiB", "--metrics-address", ""},
        {}, log_);
    EXPECT_TRUE(WaitFor([&] { return ReadFile(log_).find("twd ready") != std::string::npos; }))
        << ReadFile(log_);
    return p;
  }
  std::string dir_;
  std::string log_;
  int starts_ = 0;
};

TEST_F(TwdBinaryTest, ChunksSurviveSigtermAndRestart) {
  constexpr uint64_t kSeg = 256 * 1024;
  const Namespace ns_fields = TestNamespace("", 4);
  std::vector<Key> keys;
  {
    Process p = Start();
    auto c = TestClient::Connect(dir_ + "/twd.sock");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    auto h = c->Hello({ns_fields}, 8 << 20);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    const Key ns = protocol::KeyFromBytes(h->namespace_digests(0));
    for (uint64_t i = 0; i < 4 * kSeg; ++i) c->arena()[i] = static_cast<uint8_t>(i * 13 + 5);
    pb::PutRequest put;
    *put.add_items() = MakePutItem(ns, ns, {1, 2, 3, 4}, {kSeg, kSeg}, 0);
    put.mutable_items(0)->set_durability(pb::DURABILITY_DISK);
    const Key k1 = protocol::KeyFromBytes(put.items(0).ref().key());
    *put.add_items() = MakePutItem(ns, k1, {5, 6, 7, 8}, {kSeg, kSeg}, 2 * kSeg);
    put.mutable_items(1)->set_durability(pb::DURABILITY_MEMORY);
    auto r = c->Call<pb::PutResponse>(Opcode::kPut, put);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (const auto& res : r->results()) {
      ASSERT_EQ(res.result(), pb::PUT_RESULT_STORED) << res.message();
    }
    keys = {k1, protocol::KeyFromBytes(put.items(1).ref().key())};

    // A second twd on the same socket and data path is refused.
    Process second =
        Process::Spawn({std::string(TW_BINARY_DIR) + "/bin/twd", "--socket", dir_ + "/twd.sock",
                        "--data-dir", dir_ + "/data", "--metrics-address", ""},
                       {}, dir_ + "/log2");
    EXPECT_EQ(second.Wait(), 1);

    p.Signal(SIGTERM);
    EXPECT_EQ(p.Wait(), 0) << ReadFile(log_);
  }
  Process p = Start();
  auto c = TestClient::Connect(dir_ + "/twd.sock");
  ASSERT_TRUE(c.ok());
  auto h = c->Hello({ns_fields}, 8 << 20);
  ASSERT_TRUE(h.ok());
  const Key ns = protocol::KeyFromBytes(h->namespace_digests(0));
  pb::LookupRequest lr;
  auto* chain = lr.add_items()->add_chains();
  chain->set_namespace_digest(std::string(ns.View()));
  for (const Key& k : keys) chain->add_keys(std::string(k.View()));
  auto l = c->Call<pb::LookupResponse>(Opcode::kLookup, lr);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->results(0).prefix(), 2u);
  pb::GetRequest g;
  for (int i = 0; i < 2; ++i) {
    auto* item = g.add_items();
    item->mutable_ref()->set_key(std::string(keys[i].View()));
    item->mutable_ref()->set_namespace_digest(std::string(ns.View()));
    item->set_arena_offset(4 * kSeg + i * 2 * kSeg);
    item->set_arena_length(2 * kSeg);
  }
  auto got = c->Call<pb::GetResponse>(Opcode::kGet, g);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(got->results(i).miss(), pb::MISS_REASON_NONE) << i;
    EXPECT_EQ(got->results(i).bytes(), 2 * kSeg) << i;
  }
  for (uint64_t i = 0; i < 4 * kSeg; ++i) {
    ASSERT_EQ(c->arena()[4 * kSeg + i], static_cast<uint8_t>(i * 13 + 5)) << i;
  }
  p.Signal(SIGTERM);
  EXPECT_EQ(p.Wait(), 0);
}

}  // namespace
}  // namespace tw::twd::testing
