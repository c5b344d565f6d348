// wire::SyncAnswer, where a synchronous call's answer lands: set on the calling thread (it read
// its own reply) or on another one (the reader thread, a pipelining caller), taken by the
// caller once, and a deadline when nobody answers. Timing decides nothing here: the deadline
// cases use deadlines already past or far away.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "wire.h"

namespace tw::client::wire {
namespace {

using Clock = std::chrono::steady_clock;

TEST(SyncAnswerTest, SetOnTheCallingThreadIsTakenAtOnce) {
  SyncAnswer<std::string> a;
  EXPECT_FALSE(a.ready());
  a.Set(std::string("reply"));
  EXPECT_TRUE(a.ready());
  // The deadline is already past: a set answer is still taken, not timed out.
  auto v = a.Take(Clock::now() - std::chrono::seconds(1));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(*v, "reply");
}

TEST(SyncAnswerTest, AnErrorIsTheAnswer) {
  SyncAnswer<int> a;
  a.Set(CancelledError("the client connection was closed"));
  auto v = a.Take(Clock::now());
  EXPECT_EQ(v.status().code(), StatusCode::kCancelled);
}

TEST(SyncAnswerTest, SetOnAnotherThreadWakesTheCaller) {
  auto a = std::make_shared<SyncAnswer<int>>();
  std::thread reader([a] { a->Set(42); });
  // Far deadline: only the Set can end the wait.
  auto v = a->Take(Clock::now() + std::chrono::hours(1));
  reader.join();
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(*v, 42);
}

TEST(SyncAnswerTest, NoAnswerByTheDeadlineIsDeadlineExceeded) {
  SyncAnswer<int> a;
  auto v = a.Take(Clock::now() - std::chrono::milliseconds(1));
  EXPECT_EQ(v.status().code(), StatusCode::kDeadlineExceeded) << v.status().ToString();
  // An answer that arrives after the caller gave up goes nowhere (the completion owns the
  // answer through a shared_ptr in CallSync) and breaks nothing.
  a.Set(1);
  EXPECT_TRUE(a.ready());
}

}  // namespace
}  // namespace tw::client::wire
