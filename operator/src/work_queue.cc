#include "tw/operator/work_queue.h"

#include <algorithm>
#include <cmath>

namespace tw::op {

RateLimiter::RateLimiter(RateLimiterConfig config)
    : config_(config), tokens_(static_cast<double>(config.burst)) {}

std::chrono::nanoseconds RateLimiter::When(const std::string& key, Clock::time_point now) {
  // Per item: base * 2^failures, capped.
  int failures = failures_[key]++;
  double item =
      static_cast<double>(config_.item_base_delay.count()) * std::pow(2.0, std::min(failures, 62));
  item = std::min(item, static_cast<double>(config_.item_max_delay.count()));
  // Overall token bucket: refill since the last call, then take one token (possibly going
  // into debt, which becomes the wait).
  if (!started_) {
    started_ = true;
    last_ = now;
  }
  double elapsed = std::chrono::duration<double>(now - last_).count();
  if (elapsed > 0) {
    tokens_ = std::min(static_cast<double>(config_.burst), tokens_ + elapsed * config_.qps);
    last_ = now;
  }
  tokens_ -= 1;
  double bucket_ns = tokens_ >= 0 ? 0 : (-tokens_ / config_.qps) * 1e9;
  return std::chrono::nanoseconds(static_cast<int64_t>(std::max(item, bucket_ns)));
}

void RateLimiter::Forget(const std::string& key) { failures_.erase(key); }

int RateLimiter::NumRequeues(const std::string& key) const {
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

WorkQueue::WorkQueue(RateLimiterConfig config) : limiter_(config) {}

WorkQueue::~WorkQueue() { ShutDown(); }

void WorkQueue::AddLocked(const std::string& key) {
  if (shutting_down_) return;
  ++adds_;
  if (dirty_.count(key)) return;
  dirty_.insert(key);
  if (processing_.count(key)) return;  // re-queued by Done()
  queue_.push_back(key);
  cv_.notify_one();
}

void WorkQueue::Add(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  AddLocked(key);
}

void WorkQueue::AddAfter(const std::string& key, std::chrono::nanoseconds delay) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) return;
  if (delay <= std::chrono::nanoseconds::zero()) {
    AddLocked(key);
    return;
  }
  auto at = Clock::now() + delay;
  auto it = delayed_at_.find(key);
  if (it != delayed_at_.end()) {
    if (it->second <= at) return;  // an earlier wake-up is already planned
    auto range = delayed_.equal_range(it->second);
    for (auto d = range.first; d != range.second; ++d) {
      if (d->second == key) {
        delayed_.erase(d);
        break;
      }
    }
  }
  delayed_.emplace(at, key);
  delayed_at_[key] = at;
  cv_.notify_all();
}

void WorkQueue::AddRateLimited(const std::string& key) {
  std::chrono::nanoseconds delay;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++retries_;
    delay = limiter_.When(key, Clock::now());
  }
  AddAfter(key, delay);
}

void WorkQueue::Forget(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  limiter_.Forget(key);
}

int WorkQueue::NumRequeues(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  return limiter_.NumRequeues(key);
}

void WorkQueue::PromoteDueLocked(Clock::time_point now) {
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    std::string key = delayed_.begin()->second;
    delayed_.erase(delayed_.begin());
    delayed_at_.erase(key);
    AddLocked(key);
  }
}

std::optional<std::string> WorkQueue::Get() { return GetFor(std::chrono::hours(24 * 365)); }

std::optional<std::string> WorkQueue::GetFor(std::chrono::nanoseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  auto deadline = Clock::now() + timeout;
  while (true) {
    if (shutting_down_) return std::nullopt;
    auto now = Clock::now();
    PromoteDueLocked(now);
    if (!queue_.empty()) break;
    if (now >= deadline) return std::nullopt;
    auto wake = deadline;
    if (!delayed_.empty()) wake = std::min(wake, delayed_.begin()->first);
    cv_.wait_until(lock, wake);
  }
  std::string key = std::move(queue_.front());
  queue_.pop_front();
  processing_.insert(key);
  dirty_.erase(key);
  return key;
}

void WorkQueue::Done(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  processing_.erase(key);
  if (dirty_.count(key) && !shutting_down_) {
    queue_.push_back(key);
    cv_.notify_one();
  }
}

void WorkQueue::ShutDown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutting_down_ = true;
  queue_.clear();
  delayed_.clear();
  delayed_at_.clear();
  cv_.notify_all();
}

bool WorkQueue::shutting_down() {
  std::lock_guard<std::mutex> lock(mu_);
  return shutting_down_;
}

size_t WorkQueue::Len() {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

size_t WorkQueue::DelayedLen() {
  std::lock_guard<std::mutex> lock(mu_);
  return delayed_.size();
}

uint64_t WorkQueue::adds() {
  std::lock_guard<std::mutex> lock(mu_);
  return adds_;
}

uint64_t WorkQueue::retries() {
  std::lock_guard<std::mutex> lock(mu_);
  return retries_;
}

}  // namespace tw::op
