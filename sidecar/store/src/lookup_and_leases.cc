// Lookup (the longest stored prefix of a chain) and the read leases it hands out.
#include <algorithm>

#include "store_impl.h"

namespace tw::store {

LookupResult StoreImpl::Lookup(std::span<const Key> chain, bool take_lease) {
  LookupResult r;
  const size_t n = chain.size();
  std::lock_guard<std::mutex> l(mu_);
  ExpireLeases();
  std::vector<Tag> pinned;
  // The tiers, DRAM object ids and NVMe offsets of the found chunks, in chain order, written
  // by index into scratch kept across lookups (guarded by mu_): no allocation and no growth
  // check per key. The offsets are gathered only when there is an NVMe engine and it records
  // reads (LRU reclaim).
  const bool touch_nvme = nvme_ && nvme_->tracks_reads();
  if (lookup_tiers_.size() < n) lookup_tiers_.resize(n);
  if (lookup_dram_ids_.size() < n) lookup_dram_ids_.resize(n);
  if (touch_nvme && lookup_nvme_offs_.size() < n) lookup_nvme_offs_.resize(n);
  uint32_t* const dram_ids = lookup_dram_ids_.data();
  uint64_t* const nvme_offs = lookup_nvme_offs_.data();
  Tier* const tiers = lookup_tiers_.data();
  size_t n_dram = 0, n_nvme = 0, found = 0;
  // By tag, and by full key for chunks in DRAM; the full key of a chunk only on NVMe is
  // verified when its bytes are served (a tag collision, ~n/2^64 per key, can make a lookup
  // report a chunk whose get then misses).
  // The index slots of a long chain are scattered over the table: ask for a few keys ahead.
  constexpr size_t kPrefetchAhead = 8;
  for (size_t i = 0; i < std::min(kPrefetchAhead, n); ++i) index_.prefetch(TagOf(chain[i]));
  for (; found < n; ++found) {
    const Key& k = chain[found];
    if (found + kPrefetchAhead < n) index_.prefetch(TagOf(chain[found + kPrefetchAhead]));
    const Tag t = TagOf(k);
    const size_t h = TagHash(t);
    Entry* e = Find(t, h);
    if (!e || !e->ready || e->doomed) {
      r.miss = AbsentReason(t);
      break;
    }
    if (e->in_dram) {
      // The object's key starts with t (AttachDram files it under its own tag): the full-key
      // check is the other 24 bytes, and a tag collision is still a miss.
      const uint32_t id = DramId(t, h);
      if (!SameKeyPastTag(dram_objs_[id].key, k)) {
        r.miss = MissReason::kAbsent;
        break;
      }
      dram_ids[n_dram++] = id;
      tiers[found] = Tier::kDram;
    } else {
      tiers[found] = Tier::kNvme;
    }
    if (touch_nvme && e->on_nvme()) nvme_offs[n_nvme++] = e->nvme_off();
    e->hit = true;
    e->qref = true;
    if (take_lease) {
      Pin(t, *e);
      pinned.push_back(t);
    }
  }
  r.prefix = found;
  r.tiers.assign(tiers, tiers + found);
  // A hit on chunk j is a hit on each of its ancestors. They are touched deepest first, so the
  // ancestors end up the most recently used: under pressure, descendants go before the
  // ancestors they cannot be reached without.
  if (n_dram > 0) dram_->TouchLastFirst(std::span<const uint32_t>(dram_ids, n_dram));
  if (n_nvme > 0) {
    std::reverse(nvme_offs, nvme_offs + n_nvme);
    nvme_->Touch(std::span<const uint64_t>(nvme_offs, n_nvme));
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
