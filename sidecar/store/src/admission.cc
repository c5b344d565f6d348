#include "admission.h"

#include <algorithm>
#include <chrono>

namespace tw::store {
namespace {

constexpr size_t kSeenCapacity = 1 << 16;

}  // namespace

Admission::Admission(const AdmissionOptions& options, std::function<Clock::time_point()> now)
    : options_(options),
      now_(std::move(now)),
      budget_tokens_(double(options.write_budget)),
      budget_at_(now_()) {}

bool Admission::Admit(uint64_t tag, uint64_t bytes) {
  switch (options_.policy) {
    case AdmissionPolicy::kAll:
      return true;
    case AdmissionPolicy::kSecondSight:
      if (seen_.contains(tag)) return true;
      seen_.insert(tag);
      seen_fifo_.push_back(tag);
      if (seen_fifo_.size() > kSeenCapacity) {
        seen_.erase(seen_fifo_.front());
        seen_fifo_.pop_front();
      }
      return false;
    case AdmissionPolicy::kWriteBudget: {
      const Clock::time_point now = now_();
      const double rate = double(options_.write_budget);
      budget_tokens_ = std::min(
          rate, budget_tokens_ + rate * std::chrono::duration<double>(now - budget_at_).count());
      budget_at_ = now;
      if (budget_tokens_ < double(bytes)) return false;
      budget_tokens_ -= double(bytes);
      return true;
    }
  }
  return true;
}

uint64_t Admission::memory_bytes() const {
  const uint64_t cap = seen_.capacity();
  const uint64_t table = cap == 0 ? 0 : cap * (sizeof(uint64_t) + 1) + 16 + sizeof(size_t);
  return table + seen_fifo_.size() * sizeof(uint64_t);
}

}  // namespace tw::store
