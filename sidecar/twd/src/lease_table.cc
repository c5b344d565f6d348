#include "lease_table.h"

namespace tw::twd {

void LeaseTable::SetLimits(const Limits& limits) {
  std::lock_guard lock(mu_);
  limits_ = limits;
}

LeaseTable::Limits LeaseTable::limits() const {
  std::lock_guard lock(mu_);
  return limits_;
}

void LeaseTable::EraseLocked(std::unordered_map<uint64_t, Entry>::iterator it) {
  Usage& u = usage_[it->second.uid];
  u.count -= 1;
  u.bytes -= it->second.bytes;
  if (u.count == 0) usage_.erase(it->second.uid);
  for (const Part& p : it->second.parts) {
    if (p.store_lease != 0) store_->ReleaseLease(p.store_lease);
  }
  leases_.erase(it);
}

std::optional<uint64_t> LeaseTable::Add(uid_t uid, uint64_t bytes, std::vector<Part> parts,
                                        Clock::time_point now) {
  std::lock_guard lock(mu_);
  // Expired leases of this uid do not count against it.
  for (auto it = leases_.begin(); it != leases_.end();) {
    auto next = std::next(it);
    if (it->second.uid == uid && it->second.expiry <= now) EraseLocked(it);
    it = next;
  }
  Usage& u = usage_[uid];
  if (u.count >= limits_.max_per_uid || bytes > limits_.max_bytes_per_uid - u.bytes) {
    if (u.count == 0) usage_.erase(uid);
    for (const Part& p : parts) {
      if (p.store_lease != 0) store_->ReleaseLease(p.store_lease);
    }
    return std::nullopt;
  }
  uint64_t id;
  do {
    id = rng_();
  } while (id == 0 || leases_.contains(id));
  u.count += 1;
  u.bytes += bytes;
  leases_.emplace(id, Entry{uid, bytes, now + limits_.duration, std::move(parts)});
  return id;
}

store::LeaseId LeaseTable::Resolve(uint64_t lease, uid_t uid, const Key& ns,
                                   Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = leases_.find(lease);
  if (it == leases_.end() || it->second.uid != uid || it->second.expiry <= now) return 0;
  for (const Part& p : it->second.parts) {
    if (p.namespace_digest == ns) return p.store_lease;
  }
  return 0;
}

bool LeaseTable::Release(uint64_t lease, uid_t uid) {
  std::lock_guard lock(mu_);
  auto it = leases_.find(lease);
  if (it == leases_.end() || it->second.uid != uid) return false;
  EraseLocked(it);
  return true;
}

size_t LeaseTable::Expire(Clock::time_point now) {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (auto it = leases_.begin(); it != leases_.end();) {
    auto next = std::next(it);
    if (it->second.expiry <= now) {
      EraseLocked(it);
      ++n;
    }
    it = next;
  }
  return n;
}

size_t LeaseTable::size() const {
  std::lock_guard lock(mu_);
  return leases_.size();
}

}  // namespace tw::twd
