// Admission: which puts and write-backs go to the NVMe tier (Options::admission). `all` admits
// everything; `second_sight` admits a chunk the second time it is offered (remembering the
// last 64 Ki tags offered); `write_budget` admits while a token bucket of write_budget bytes
// per second, refilled by the store's clock, has tokens.
//
// Threading: not thread-safe; the Store calls it under its mutex. Lifetime: owned by the Store.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>

#include "absl/container/flat_hash_set.h"
#include "tw/store/options.h"

namespace tw::store {

class Admission {
 public:
  // `now` is the store's clock (Options::now).
  Admission(const AdmissionOptions& options, std::function<Clock::time_point()> now);

  // Whether the chunk with tag `tag` and `bytes` bytes of record may be written to NVMe now.
  bool Admit(uint64_t tag, uint64_t bytes);
  // New policy and budget; the bucket and the remembered tags carry over.
  void Reconfigure(const AdmissionOptions& options) { options_ = options; }
  // DRAM the remembered tags take (Stats().index_bytes).
  uint64_t memory_bytes() const;

 private:
  AdmissionOptions options_;
  std::function<Clock::time_point()> now_;
  std::deque<uint64_t> seen_fifo_;  // second_sight: tags in the order first offered
  absl::flat_hash_set<uint64_t> seen_;
  double budget_tokens_ = 0;  // write_budget: bytes that may be written now
  Clock::time_point budget_at_;
};

}  // namespace tw::store
