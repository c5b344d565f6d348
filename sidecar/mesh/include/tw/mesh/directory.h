// Directory: the soft state a home node keeps for the chunk keys placed on it: for each key,
// the nodes that announced they hold it and when each last did.
//
// Soft state by design: entries come only from announcements, expire when not re-announced
// within `ttl`, and are rebuilt by re-announcing after a restart or a membership change
// (rehome.h). A stale entry costs the asker one wasted fetch (the holder answers a miss),
// never wrong bytes, so the directory may forget at any time and favours bounded memory over
// completeness:
//   - at most `max_keys` keys: announcing a new key when full evicts the key announced least
//     recently (counted in Stats::evicted_keys);
//   - at most `max_holders_per_key` holders a key: a new holder evicts the one announced least
//     recently (Stats::evicted_holders);
//   - Lookup() never returns a holder whose last announcement is older than `ttl`, and
//     Expire() frees every key none of whose holders is fresh (Stats::expired_keys).
//
// Threading: every method may be called from any thread. One mutex (mu_) guards all state;
// each call holds it for its whole batch (a batch is bounded by the sender's batch size), and
// nothing is called back under it. Lifetime: a plain object; the clock function must stay
// callable while the directory lives.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "tw/common/keys.h"
#include "tw/common/status.h"
#include "tw/mesh/mesh_types.h"

namespace tw::mesh {

class Directory {
 public:
  struct Options {
    // Most keys kept (a key with a few holders costs about 150 bytes).
    size_t max_keys = size_t{1} << 22;
    // Most holders kept per key.
    size_t max_holders_per_key = 16;
    // A holder not re-announced within this is no longer returned and is then forgotten.
    std::chrono::nanoseconds ttl = std::chrono::minutes(10);
    // The directory's clock.
    NowFn now = Clock::now;

    // INVALID_ARGUMENT naming the field when a bound is 0 or ttl is not positive.
    Status Validate() const;
  };

  struct Stats {
    uint64_t keys = 0;               // keys held now
    uint64_t holders = 0;            // (key, holder) records held now
    uint64_t announces = 0;          // announce updates applied
    uint64_t withdraws = 0;          // withdraw updates applied (found or not)
    uint64_t evicted_keys = 0;       // keys dropped to stay under max_keys
    uint64_t evicted_holders = 0;    // holders dropped to stay under max_holders_per_key
    uint64_t expired_keys = 0;       // keys dropped by Expire() (no fresh holder left)
    uint64_t expired_holders = 0;    // stale holders dropped (by Expire() or a lookup)
    uint64_t forgotten_holders = 0;  // holders dropped by ForgetNode()
  };

  // REQUIRES: options.Validate() is OK.
  explicit Directory(Options options);

  // Applies a holder's batch in order. An announce (re)stamps the holder with now(); a
  // withdraw removes it (and the key when no holder is left).
  void Apply(const UpdateBatch& batch);

  // For each key, its fresh holders, most recently announced first (empty: unknown here).
  std::vector<std::vector<std::string>> Lookup(std::span<const Key> keys);

  // Lookup's answer in flat form, with no container per key (a home answering a batch of
  // hundreds of keys): key i's holders are nodes[holders[j]] for j in
  // [offsets[i], offsets[i + 1]), most recently announced first.
  struct Packed {
    std::vector<std::string> nodes;  // the distinct holders named in the answer
    std::vector<uint32_t> offsets;   // keys.size() + 1 entries
    std::vector<uint32_t> holders;   // indices into nodes
  };
  void LookupPacked(std::span<const Key> keys, Packed* out);

  // Drops every holder not announced within ttl, and every key left without holders.
  // Returns the number of keys dropped. Cost: the keys it drops plus the fresh key it stops at,
  // because keys are kept in order of their last announcement.
  size_t Expire();

  // Drops every record of `node` (a peer that left the membership). Cost: every key.
  size_t ForgetNode(std::string_view node);

  Stats GetStats() const;

 private:
  struct Holder {
    std::string node;
    Clock::time_point announced;
  };
  struct Entry {
    std::vector<Holder> holders;        // most recent first
    std::list<Key>::iterator position;  // in order_
  };

  void AnnounceLocked(const Key& key, const std::string& node, Clock::time_point now);
  void WithdrawLocked(const Key& key, const std::string& node);
  void EraseLocked(absl::flat_hash_map<Key, Entry>::iterator it);
  // The key's fresh holders after dropping its stale ones (and the key when none is left):
  // null when it has none.
  const std::vector<Holder>* FreshLocked(const Key& key, Clock::time_point cutoff);

  const Options options_;

  mutable std::mutex mu_;
  absl::flat_hash_map<Key, Entry> entries_;  // GUARDED_BY(mu_)
  // Keys by their last announcement, oldest first (the eviction and expiry order).
  std::list<Key> order_;  // GUARDED_BY(mu_)
  Stats stats_;           // GUARDED_BY(mu_)
};

}  // namespace tw::mesh
