// FakeClock: the store's time for tests (tw_store_testing). A test puts clock.Now() into
// Options::now and calls Advance() where it would otherwise sleep: leases expire and the
// admission write budget refills exactly when the test says, never by wall time.
//
// Threading: Now() and Advance() may be called from any thread (the store reads the clock on
// its own threads). Lifetime: the clock must outlive every store that reads it; Now() returns
// a function that shares ownership, so that is automatic.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>

#include "tw/store/options.h"

namespace tw::store {

class FakeClock {
 public:
  // Starts at an arbitrary fixed point, far from the epoch.
  FakeClock() : state_(std::make_shared<State>()) {}

  // The function to put into Options::now.
  std::function<Clock::time_point()> Now() const {
    return [s = state_] {
      std::lock_guard<std::mutex> l(s->mu);
      return s->now;
    };
  }
  Clock::time_point now() const { return Now()(); }
  void Advance(std::chrono::nanoseconds d) {
    std::lock_guard<std::mutex> l(state_->mu);
    state_->now += d;
  }

 private:
  struct State {
    std::mutex mu;
    Clock::time_point now = Clock::time_point(std::chrono::hours(24 * 365));
  };
  std::shared_ptr<State> state_;
};

}  // namespace tw::store
