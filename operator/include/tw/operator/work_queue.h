// WorkQueue: the controller's queue of object keys ("namespace/name"), with the semantics of
// client-go's workqueue: a key waiting in the queue is held once however often it is added
// (dirty set); a key being processed is never handed to a second worker — adding it again
// marks it dirty and it is re-queued by Done(); AddAfter() delays; AddRateLimited() delays
// by the RateLimiter (per-item exponential backoff, max with an overall token bucket) and
// Forget() resets the item's backoff.
//
// RateLimiter is pure (time is passed in) so it is tested without sleeping.
//
// Threading: every WorkQueue method is thread-safe; Get() blocks until a key is ready or
// ShutDown(). One mutex guards all state. Lifetime: ShutDown() before destroying while
// workers may still be blocked in Get().
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace tw::op {

using Clock = std::chrono::steady_clock;

struct RateLimiterConfig {
  // First retry delay of an item; doubles per failure up to item_max_delay.
  std::chrono::nanoseconds item_base_delay = std::chrono::milliseconds(5);
  std::chrono::nanoseconds item_max_delay = std::chrono::seconds(300);
  // Overall token bucket: sustained rate and burst.
  double qps = 10;
  int burst = 100;
};

class RateLimiter {
 public:
  explicit RateLimiter(RateLimiterConfig config);
  // The delay before `key` may be retried, counting this failure. NOT thread-safe: the
  // WorkQueue calls it under its lock.
  std::chrono::nanoseconds When(const std::string& key, Clock::time_point now);
  // Clears the item's failure count.
  void Forget(const std::string& key);
  // Failures counted for `key` since its last Forget().
  int NumRequeues(const std::string& key) const;

 private:
  RateLimiterConfig config_;
  std::unordered_map<std::string, int> failures_;
  double tokens_;
  Clock::time_point last_;
  bool started_ = false;
};

class WorkQueue {
 public:
  explicit WorkQueue(RateLimiterConfig config = {});
  ~WorkQueue();

  // Queues `key` unless it is already waiting; a key being processed is re-queued on Done().
  void Add(const std::string& key);
  // Adds `key` after `delay` (0 = now).
  void AddAfter(const std::string& key, std::chrono::nanoseconds delay);
  // Adds `key` after the rate limiter's delay for it; counts a retry.
  void AddRateLimited(const std::string& key);
  // Resets `key`'s backoff (after a successful reconcile).
  void Forget(const std::string& key);
  int NumRequeues(const std::string& key);

  // Blocks for the next key; nullopt once shut down. The caller must call Done(key).
  std::optional<std::string> Get();
  // Like Get() but gives up after `timeout`.
  std::optional<std::string> GetFor(std::chrono::nanoseconds timeout);
  void Done(const std::string& key);

  // Wakes every Get(); queued keys are dropped.
  void ShutDown();
  bool shutting_down();

  // Keys waiting (not counting delayed and in-process ones).
  size_t Len();
  // Counters for metrics.
  uint64_t adds();
  uint64_t retries();
  // Keys currently delayed.
  size_t DelayedLen();

 private:
  void AddLocked(const std::string& key);
  void PromoteDueLocked(Clock::time_point now);

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;                                  // guarded by mu_
  std::unordered_set<std::string> dirty_;                          // guarded by mu_
  std::unordered_set<std::string> processing_;                     // guarded by mu_
  std::multimap<Clock::time_point, std::string> delayed_;          // guarded by mu_
  std::unordered_map<std::string, Clock::time_point> delayed_at_;  // guarded by mu_
  RateLimiter limiter_;                                            // guarded by mu_
  bool shutting_down_ = false;                                     // guarded by mu_
  uint64_t adds_ = 0;                                              // guarded by mu_
  uint64_t retries_ = 0;                                           // guarded by mu_
};

}  // namespace tw::op
