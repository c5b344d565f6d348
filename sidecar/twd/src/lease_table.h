// LeaseTable: twd's read leases. A lease taken by LOOKUP groups the store leases of each
// chain (one per tensor-parallel rank) under one id that any connection of the same uid may
// use. Leases are capped per uid (count and bytes) and expire after a fixed duration.
//
// Threading: thread-safe; one mutex guards the table. Lifetime: owned by the ServiceCore; store
// leases still held at destruction are left to expire in the store.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <unordered_map>
#include <vector>

#include "tw/common/keys.h"
#include "tw/store/store.h"

namespace tw::twd {

class LeaseTable {
 public:
  using Clock = std::chrono::steady_clock;

  struct Limits {
    std::chrono::nanoseconds duration = std::chrono::seconds(5);
    uint32_t max_per_uid = 1024;
    uint64_t max_bytes_per_uid = uint64_t{64} << 30;
  };

  // One store lease of one chain.
  struct Part {
    Key namespace_digest;
    store::LeaseId store_lease = 0;
  };

  explicit LeaseTable(store::Store* store) : store_(store), rng_(std::random_device{}()) {}

  void SetLimits(const Limits& limits);
  Limits limits() const;

  // Registers a lease for `uid`; nullopt (and the parts released in the store) when the uid
  // is at its cap.
  std::optional<uint64_t> Add(uid_t uid, uint64_t bytes, std::vector<Part> parts,
                              Clock::time_point now);
  // The store lease of `lease` for `ns`, if `lease` is live and belongs to `uid`; else 0.
  store::LeaseId Resolve(uint64_t lease, uid_t uid, const Key& ns, Clock::time_point now);
  // Releases a live lease owned by `uid`. False when absent, expired or someone else's.
  bool Release(uint64_t lease, uid_t uid);
  // Drops expired leases (releasing their store leases). Returns how many.
  size_t Expire(Clock::time_point now);
  // Live leases (tests, stats).
  size_t size() const;

 private:
  struct Entry {
    uid_t uid;
    uint64_t bytes;
    Clock::time_point expiry;
    std::vector<Part> parts;
  };
  struct Usage {
    uint32_t count = 0;
    uint64_t bytes = 0;
  };
  void EraseLocked(std::unordered_map<uint64_t, Entry>::iterator it);

  store::Store* const store_;
  mutable std::mutex mu_;
  Limits limits_;                               // GUARDED_BY(mu_)
  std::unordered_map<uint64_t, Entry> leases_;  // GUARDED_BY(mu_)
  std::unordered_map<uid_t, Usage> usage_;      // GUARDED_BY(mu_)
  std::mt19937_64 rng_;                         // GUARDED_BY(mu_)
};

}  // namespace tw::twd
