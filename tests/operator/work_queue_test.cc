#include "tw/operator/work_queue.h"

#include <atomic>
#include <set>
#include <thread>

#include "gtest/gtest.h"
#include "tw/operator/backoff.h"

namespace tw::op {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

TEST(RateLimiterTest, PerItemExponentialCappedAndForgotten) {
  RateLimiterConfig cfg;
  cfg.item_base_delay = milliseconds(5);
  cfg.item_max_delay = milliseconds(100);
  cfg.qps = 1e9;  // bucket never limits here
  cfg.burst = 1000000;
  RateLimiter rl(cfg);
  auto now = Clock::now();
  EXPECT_EQ(rl.When("a", now), milliseconds(5));
  EXPECT_EQ(rl.When("a", now), milliseconds(10));
  EXPECT_EQ(rl.When("a", now), milliseconds(20));
  EXPECT_EQ(rl.When("b", now), milliseconds(5));  // per item
  EXPECT_EQ(rl.When("a", now), milliseconds(40));
  EXPECT_EQ(rl.When("a", now), milliseconds(80));
  EXPECT_EQ(rl.When("a", now), milliseconds(100));  // capped
  EXPECT_EQ(rl.When("a", now), milliseconds(100));
  EXPECT_EQ(rl.NumRequeues("a"), 7);
  rl.Forget("a");
  EXPECT_EQ(rl.NumRequeues("a"), 0);
  EXPECT_EQ(rl.When("a", now), milliseconds(5));
}

TEST(RateLimiterTest, OverallTokenBucketLimitsAfterBurst) {
  RateLimiterConfig cfg;
  cfg.item_base_delay = nanoseconds(0);
  cfg.item_max_delay = nanoseconds(0);
  cfg.qps = 10;
  cfg.burst = 3;
  RateLimiter rl(cfg);
  auto now = Clock::now();
  EXPECT_EQ(rl.When("k1", now), nanoseconds(0));
  EXPECT_EQ(rl.When("k2", now), nanoseconds(0));
  EXPECT_EQ(rl.When("k3", now), nanoseconds(0));
  EXPECT_EQ(rl.When("k4", now), milliseconds(100));  // one token short at 10/s
  EXPECT_EQ(rl.When("k5", now), milliseconds(200));
  // A second later ten tokens came back (capped at the burst of 3), minus the debt of 2.
  auto later = now + seconds(1);
  EXPECT_EQ(rl.When("k6", later), nanoseconds(0));
}

TEST(WorkQueueTest, DeduplicatesWaitingKeys) {
  WorkQueue q;
  q.Add("ns/a");
  q.Add("ns/a");
  q.Add("ns/b");
  q.Add("ns/a");
  EXPECT_EQ(q.Len(), 2u);
  EXPECT_EQ(q.adds(), 4u);
  auto first = q.GetFor(milliseconds(10));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(*first, "ns/a");
  auto second = q.GetFor(milliseconds(10));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(*second, "ns/b");
  EXPECT_FALSE(q.GetFor(milliseconds(1)).has_value());
}

TEST(WorkQueueTest, KeyAddedWhileProcessingIsRequeuedOnDoneNotHandedOut) {
  WorkQueue q;
  q.Add("k");
  auto k = q.GetFor(milliseconds(10));
  ASSERT_TRUE(k.has_value());
  q.Add("k");  // while in process
  q.Add("k");
  EXPECT_EQ(q.Len(), 0u);
  EXPECT_FALSE(q.GetFor(milliseconds(5)).has_value()) << "one key must never be in two workers";
  q.Done("k");
  EXPECT_EQ(q.Len(), 1u);
  auto again = q.GetFor(milliseconds(10));
  ASSERT_TRUE(again.has_value());
  q.Done("k");
  EXPECT_EQ(q.Len(), 0u);
}

TEST(WorkQueueTest, ConcurrentWorkersNeverShareAKey) {
  WorkQueue q;
  std::atomic<int> in_flight_a{0};
  std::atomic<int> max_in_flight_a{0};
  std::atomic<int> processed{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      while (true) {
        auto key = q.Get();
        if (!key) return;
        if (*key == "a") {
          int now = ++in_flight_a;
          int prev = max_in_flight_a.load();
          while (now > prev && !max_in_flight_a.compare_exchange_weak(prev, now)) {
          }
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          --in_flight_a;
        }
        ++processed;
        q.Done(*key);
      }
    });
  }
  for (int i = 0; i < 2000; ++i) {
    q.Add("a");
    q.Add(i % 2 ? "b" : "c");
  }
  while (q.Len() > 0) std::this_thread::sleep_for(milliseconds(1));
  std::this_thread::sleep_for(milliseconds(20));
  q.ShutDown();
  for (auto& t : workers) t.join();
  EXPECT_EQ(max_in_flight_a.load(), 1);
  EXPECT_GT(processed.load(), 2);
  EXPECT_LT(processed.load(), 6000) << "duplicates must collapse";
}

TEST(WorkQueueTest, AddAfterDelaysAndKeepsTheEarliest) {
  WorkQueue q;
  q.AddAfter("late", seconds(3600));
  q.AddAfter("soon", milliseconds(1));
  q.AddAfter("late", milliseconds(2));  // earlier wins
  EXPECT_EQ(q.DelayedLen(), 2u);
  std::set<std::string> got;
  for (int i = 0; i < 2; ++i) {
    auto k = q.GetFor(seconds(10));
    ASSERT_TRUE(k.has_value());
    got.insert(*k);
    q.Done(*k);
  }
  EXPECT_EQ(got, (std::set<std::string>{"late", "soon"}));
}

TEST(WorkQueueTest, AddRateLimitedCountsRetriesAndForgetResets) {
  RateLimiterConfig cfg;
  cfg.item_base_delay = milliseconds(1);
  WorkQueue q(cfg);
  q.AddRateLimited("x");
  q.AddRateLimited("x");
  EXPECT_EQ(q.NumRequeues("x"), 2);
  EXPECT_EQ(q.retries(), 2u);
  q.Forget("x");
  EXPECT_EQ(q.NumRequeues("x"), 0);
  auto k = q.GetFor(seconds(10));
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(*k, "x");
}

TEST(WorkQueueTest, ShutDownWakesBlockedGet) {
  WorkQueue q;
  std::thread t([&] { EXPECT_FALSE(q.Get().has_value()); });
  std::this_thread::sleep_for(milliseconds(10));
  q.ShutDown();
  t.join();
  q.Add("ignored");
  EXPECT_EQ(q.Len(), 0u);
}

TEST(BackoffTest, GrowsWithJitterUpToMaxAndResets) {
  Backoff b(milliseconds(100), milliseconds(1000), 2.0, 0.2, /*seed=*/42);
  std::vector<nanoseconds> d;
  for (int i = 0; i < 6; ++i) d.push_back(b.Next());
  const int64_t base[] = {100, 200, 400, 800, 1000, 1000};
  for (int i = 0; i < 6; ++i) {
    EXPECT_GE(d[i], milliseconds(base[i])) << i;
    EXPECT_LE(d[i], milliseconds(base[i] * 12 / 10)) << i;
  }
  b.Reset();
  auto first = b.Next();
  EXPECT_GE(first, milliseconds(100));
  EXPECT_LE(first, milliseconds(120));
}

TEST(BackoffTest, JitteredStaysInRange) {
  for (int i = 0; i < 100; ++i) {
    auto d = Jittered(seconds(300), 1.0);
    EXPECT_GE(d, seconds(300));
    EXPECT_LE(d, seconds(600));
  }
}

}  // namespace
}  // namespace tw::op
