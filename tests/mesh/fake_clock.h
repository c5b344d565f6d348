// A clock the mesh tests advance by hand (mesh::NowFn), so nothing waits on wall time.
//
// Threading: Now() and Advance() may be called from any thread. Lifetime: the function from
// Fn() shares the clock's state, so it may outlive the FakeClock.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>

#include "tw/mesh/mesh_types.h"

namespace tw::mesh::testing {

class FakeClock {
 public:
  NowFn Fn() const {
    return [s = state_] {
      std::lock_guard<std::mutex> l(s->mu);
      return s->now;
    };
  }
  Clock::time_point Now() const { return Fn()(); }
  void Advance(std::chrono::nanoseconds d) {
    std::lock_guard<std::mutex> l(state_->mu);
    state_->now += d;
  }

 private:
  struct State {
    std::mutex mu;
    Clock::time_point now = Clock::time_point(std::chrono::hours(1000));
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// A key whose first bytes spell `i` (little-endian); the rest from a fixed mix, so keys spread
// like SHA-256 outputs.
inline Key TestKey(uint64_t i) {
  Key k;
  uint64_t x = i * 0x9e3779b97f4a7c15ULL + 0x1234567;
  for (size_t b = 0; b < k.bytes.size(); ++b) {
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 29;
    k.bytes[b] = static_cast<uint8_t>(x >> 56);
  }
  return k;
}

}  // namespace tw::mesh::testing
