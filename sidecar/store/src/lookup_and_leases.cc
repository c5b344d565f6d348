// Lookup (the longest stored prefix of a chain) and the read leases it hands out.
#include <algorithm>

#include "store_impl.h"

namespace tw::store {

LookupResult StoreImpl::Lookup(std::span<const Key> chain, bool take_lease) {
  LookupResult r;
  std::lock_guard<std::mutex> l(mu_);
  ExpireLeases();
  std::vector<Tag> pinned;
  // The DRAM object ids and NVMe offsets of the found chunks, in chain order. (Nothing is
  // inserted into the index below, so no lookup is repeated.)
  std::vector<uint32_t> dram_ids;
  std::vector<uint64_t> nvme_offs;
  r.tiers.reserve(chain.size());
  dram_ids.reserve(chain.size());
  nvme_offs.reserve(chain.size());
  // By tag, and by full key for chunks in DRAM; the full key of a chunk only on NVMe is
  // verified when its bytes are served (a tag collision, ~n/2^64 per key, can make a lookup
  // report a chunk whose get then misses).
  // The index slots of a long chain are scattered over the table: ask for a few keys ahead.
  constexpr size_t kPrefetchAhead = 8;
  for (size_t i = 0; i < std::min(kPrefetchAhead, chain.size()); ++i) {
    index_.prefetch(TagOf(chain[i]));
  }
  for (size_t i = 0; i < chain.size(); ++i) {
    const Key& k = chain[i];
    if (i + kPrefetchAhead < chain.size()) index_.prefetch(TagOf(chain[i + kPrefetchAhead]));
    const Tag t = TagOf(k);
    Entry* e = Find(t);
    if (!e || !e->ready || e->doomed) {
      r.miss = AbsentReason(t);
      break;
    }
    if (e->in_dram) {
      const uint32_t id = DramId(t);
      if (dram_objs_[id].key != k) {
        r.miss = MissReason::kAbsent;
        break;
      }
      dram_ids.push_back(id);
    }
    if (e->on_nvme()) nvme_offs.push_back(e->nvme_off());
    r.tiers.push_back(e->in_dram ? Tier::kDram : Tier::kNvme);
    e->hit = true;
    e->qref = true;
    if (take_lease) {
      Pin(t, *e);
      pinned.push_back(t);
    }
  }
  r.prefix = r.tiers.size();
  // A hit on chunk j is a hit on each of its ancestors. They are touched deepest first, so the
  // ancestors end up the most recently used: under pressure, descendants go before the
  // ancestors they cannot be reached without.
  for (size_t i = dram_ids.size(); i-- > 0;) dram_->Touch(dram_ids[i]);
  if (!nvme_offs.empty()) {
    std::reverse(nvme_offs.begin(), nvme_offs.end());
    nvme_->Touch(nvme_offs);
  }
  if (take_lease && !pinned.empty()) {
    r.lease = next_lease_++;
    leases_[r.lease] = Lease{opts_.now() + opts_.lease_duration, std::move(pinned)};
  }
  return r;
}

void StoreImpl::ReleaseLease(LeaseId lease) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = leases_.find(lease);
  if (it == leases_.end()) return;
  for (Tag t : it->second.tags) Unpin(t);
  leases_.erase(it);
}

void StoreImpl::ExpireLeases() {
  const Clock::time_point now = opts_.now();
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.expiry > now) {
      ++it;
      continue;
    }
    for (Tag t : it->second.tags) Unpin(t);
    it = leases_.erase(it);
  }
}

}  // namespace tw::store
