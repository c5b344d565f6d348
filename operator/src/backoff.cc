#include "tw/operator/backoff.h"

#include <algorithm>
#include <cmath>
#include <mutex>

namespace tw::op {

Backoff::Backoff(std::chrono::nanoseconds initial, std::chrono::nanoseconds max, double factor,
                 double jitter, uint64_t seed)
    : initial_(initial), max_(max), factor_(factor), jitter_(jitter), rng_(seed) {}

std::chrono::nanoseconds Backoff::Next() {
  double base = static_cast<double>(initial_.count()) * std::pow(factor_, std::min(steps_, 60));
  base = std::min(base, static_cast<double>(max_.count()));
  ++steps_;
  std::uniform_real_distribution<double> dist(1.0, 1.0 + jitter_);
  double d = std::min(base * dist(rng_), static_cast<double>(max_.count()) * (1.0 + jitter_));
  return std::chrono::nanoseconds(static_cast<int64_t>(d));
}

void Backoff::Reset() { steps_ = 0; }

std::chrono::nanoseconds Jittered(std::chrono::nanoseconds base, double fraction) {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> dist(1.0, 1.0 + fraction);
  std::lock_guard<std::mutex> lock(mu);
  return std::chrono::nanoseconds(
      static_cast<int64_t>(static_cast<double>(base.count()) * dist(rng)));
}

}  // namespace tw::op
