// Backoff: exponential delays with jitter for retrying the API server (list/watch errors,
// 429 and 5xx answers, lease renewals), and Jittered() for spreading periodic work.
//
// A plain value: not thread-safe, one per retry loop. Delays are computed, never slept
// here, so tests check them without waiting.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace tw::op {

class Backoff {
 public:
  // Delays go initial, initial*factor, ... capped at `max`, each multiplied by a random
  // factor in [1, 1 + jitter].
  Backoff(std::chrono::nanoseconds initial, std::chrono::nanoseconds max, double factor = 2.0,
          double jitter = 0.2, uint64_t seed = std::random_device{}());
  // The next delay; advances the step.
  std::chrono::nanoseconds Next();
  // Back to `initial` (after a success).
  void Reset();
  int steps() const { return steps_; }

 private:
  std::chrono::nanoseconds initial_;
  std::chrono::nanoseconds max_;
  double factor_;
  double jitter_;
  std::mt19937_64 rng_;
  int steps_ = 0;
};

// A value drawn uniformly from [base, base * (1 + fraction)].
std::chrono::nanoseconds Jittered(std::chrono::nanoseconds base, double fraction);

}  // namespace tw::op
