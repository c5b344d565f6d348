#include "tw/mesh/announcer.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>

#include "fake_clock.h"

namespace tw::mesh {
namespace {

using testing::FakeClock;
using testing::TestKey;

std::shared_ptr<const Placement> PlacementOf(std::vector<std::string> names) {
  std::vector<Peer> peers;
  for (auto& n : names) peers.push_back({n, "10.0.0.1", 7470, 1.0});
  return std::make_shared<const Placement>(*Membership::Create(std::move(peers), 1));
}

class AnnouncerTest : public ::testing::Test {
 protected:
  Announcer::Options Opts(size_t max_batch = 4, size_t max_queue = 8) {
    Announcer::Options o;
    o.self = "me";
    o.max_batch = max_batch;
    o.max_queue_per_home = max_queue;
    o.max_delay = std::chrono::milliseconds(50);
    o.now = clock_.Fn();
    return o;
  }
  Announcer::Sender Record() {
    return [this](const std::string& home, UpdateBatch batch) {
      std::lock_guard<std::mutex> l(mu_);
      EXPECT_EQ(batch.from_node, "me");
      sent_.emplace_back(home, std::move(batch));
      cv_.notify_all();
    };
  }
  size_t SentUpdates() {
    std::lock_guard<std::mutex> l(mu_);
    size_t n = 0;
    for (auto& [home, b] : sent_) n += b.updates.size();
    return n;
  }
  FakeClock clock_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<std::string, UpdateBatch>> sent_;
};

TEST_F(AnnouncerTest, OptionsValidateNamesTheField) {
  auto o = Opts();
  o.self = "";
  EXPECT_NE(o.Validate().message().find("self"), std::string_view::npos);
  o = Opts();
  o.max_batch = 0;
  EXPECT_NE(o.Validate().message().find("max_batch"), std::string_view::npos);
  o = Opts(8, 4);
  EXPECT_NE(o.Validate().message().find("max_queue_per_home"), std::string_view::npos);
  o = Opts();
  o.max_delay = std::chrono::milliseconds(0);
  EXPECT_NE(o.Validate().message().find("max_delay"), std::string_view::npos);
  EXPECT_TRUE(Opts().Validate().ok());
}

TEST_F(AnnouncerTest, NothingIsSentFromTheEnqueuingThread) {
  Announcer a(Opts(), PlacementOf({"h"}), Record());
  for (uint64_t i = 0; i < 4; ++i) a.Announce(TestKey(i));
  EXPECT_EQ(SentUpdates(), 0u);  // full, but only a tick sends
  a.Tick();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].first, "h");
  ASSERT_EQ(sent_[0].second.updates.size(), 4u);
  EXPECT_EQ(sent_[0].second.updates[0], (Update{TestKey(0), UpdateKind::kAnnounce}));
}

TEST_F(AnnouncerTest, BatchesByHomeAndBySize) {
  auto placement = PlacementOf({"h1", "h2", "h3"});
  Announcer a(Opts(/*max_batch=*/4, /*max_queue=*/1000), placement, Record());
  std::map<std::string, std::vector<Update>> expected;
  for (uint64_t i = 0; i < 100; ++i) {
    Update u{TestKey(i), i % 5 == 0 ? UpdateKind::kWithdraw : UpdateKind::kAnnounce};
    if (u.kind == UpdateKind::kWithdraw) {
      a.Withdraw(u.key);
    } else {
      a.Announce(u.key);
    }
    expected[placement->Home(u.key)].push_back(u);
  }
  a.Tick();  // only full batches
  for (auto& [home, b] : sent_) EXPECT_EQ(b.updates.size(), 4u);
  a.Flush();  // the rest
  std::map<std::string, std::vector<Update>> got;
  for (auto& [home, b] : sent_) {
    EXPECT_LE(b.updates.size(), 4u);
    for (auto& u : b.updates) got[home].push_back(u);
  }
  EXPECT_EQ(got, expected);  // every update, to its home, in order
  auto s = a.GetStats();
  EXPECT_EQ(s.enqueued, 100u);
  EXPECT_EQ(s.updates_sent, 100u);
  EXPECT_EQ(s.batches_sent, sent_.size());
  EXPECT_EQ(s.queued, 0u);
}

TEST_F(AnnouncerTest, ASmallBatchWaitsAtMostMaxDelay) {
  Announcer a(Opts(), PlacementOf({"h"}), Record());
  a.Announce(TestKey(1));
  clock_.Advance(std::chrono::milliseconds(30));
  a.Announce(TestKey(2));
  a.Tick();
  EXPECT_TRUE(sent_.empty());
  clock_.Advance(std::chrono::milliseconds(20));  // the first waited 50 ms
  a.Tick();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].second.updates.size(), 2u);
}

TEST_F(AnnouncerTest, AFullQueueDropsAndCounts) {
  Announcer a(Opts(/*max_batch=*/4, /*max_queue=*/8), PlacementOf({"dead"}), Record());
  for (uint64_t i = 0; i < 20; ++i) a.Announce(TestKey(i));
  auto s = a.GetStats();
  EXPECT_EQ(s.enqueued, 8u);
  EXPECT_EQ(s.dropped_full, 12u);
  EXPECT_EQ(s.queued, 8u);
  a.Flush();
  EXPECT_EQ(SentUpdates(), 8u);
}

TEST_F(AnnouncerTest, NoMembersDropsAndCounts) {
  Announcer a(Opts(), PlacementOf({}), Record());
  a.Announce(TestKey(1));
  EXPECT_EQ(a.GetStats().dropped_no_home, 1u);
  a.Flush();
  EXPECT_TRUE(sent_.empty());
}

TEST_F(AnnouncerTest, SetPlacementReroutesQueuedUpdates) {
  auto before = PlacementOf({"a", "b"});
  auto after = PlacementOf({"a", "c"});  // b leaves, c joins
  Announcer a(Opts(/*max_batch=*/1000, /*max_queue=*/1000), before, Record());
  for (uint64_t i = 0; i < 200; ++i) a.Announce(TestKey(i));
  a.SetPlacement(after);
  a.Announce(TestKey(500));
  a.Flush();
  size_t total = 0;
  for (auto& [home, b] : sent_) {
    EXPECT_NE(home, "b");
    for (auto& u : b.updates) EXPECT_EQ(after->Home(u.key), home);
    total += b.updates.size();
  }
  EXPECT_EQ(total, 201u);
  EXPECT_EQ(a.GetStats().queued, 0u);
}

TEST_F(AnnouncerTest, ReroutedUpdatesKeepTheirAge) {
  Announcer a(Opts(/*max_batch=*/1000, /*max_queue=*/1000), PlacementOf({"a"}), Record());
  a.Announce(TestKey(1));
  clock_.Advance(std::chrono::milliseconds(50));
  a.SetPlacement(PlacementOf({"b"}));
  a.Tick();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].first, "b");
}

TEST_F(AnnouncerTest, TheThreadSendsAFullBatchAndStopFlushesTheRest) {
  Announcer a(Opts(/*max_batch=*/4, /*max_queue=*/100), PlacementOf({"h"}), Record());
  a.Start();
  for (uint64_t i = 0; i < 4; ++i) a.Announce(TestKey(i));
  {
    // Waits for the event; the bound only keeps a broken build from hanging.
    std::unique_lock<std::mutex> l(mu_);
    ASSERT_TRUE(cv_.wait_for(l, std::chrono::seconds(60), [&] { return !sent_.empty(); }));
  }
  a.Announce(TestKey(9));  // not due by the fake clock: only Stop() sends it
  a.Stop();
  EXPECT_EQ(SentUpdates(), 5u);
  a.Stop();  // idempotent
}

}  // namespace
}  // namespace tw::mesh
