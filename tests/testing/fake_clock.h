// FakeClock: a steady clock that tests advance by hand, for code that takes its time as a
// function (store::Options::now, the mesh's NowFn, ...): leases expire, budgets refill and
// entries age exactly when the test says, never by wall time.
//
// Threading: Fn(), Now() and Advance() may be called from any thread (the code under test
// reads the clock on its own threads). Lifetime: the function Fn() returns shares the clock's
// state, so it may outlive the FakeClock.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>

namespace tw::testing {

class FakeClock {
 public:
  using Clock = std::chrono::steady_clock;

  // The function to hand to the code under test.
  std::function<Clock::time_point()> Fn() const {
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
    // An arbitrary fixed point, far from the epoch.
    Clock::time_point now = Clock::time_point(std::chrono::hours(24 * 365));
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace tw::testing
