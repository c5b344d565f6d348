// NamespaceLabeller: bounds the cardinality of the `namespace` metric label. The busiest
// `max` namespaces by recent traffic get a label of their own (the first 16 hex digits of the
// digest); every other namespace is counted as "other".
//
// Traffic is counted per chunk (a get hit or miss, a put). Every `interval` the labeller
// decays each namespace's score (score = score / 2 + traffic of the last interval) and
// re-picks the labelled set. Relabelling is sticky so that series do not flap: a labelled
// namespace keeps its label until an unlabelled one scores more than twice its score, and a
// namespace whose score decays to nothing gives its label up. A demoted namespace's old series
// stop increasing (Prometheus keeps them until they go stale); its traffic counts as "other"
// from then on. Until the first interval has passed, the first `max` namespaces seen are
// labelled, so a fresh twd labels at once.
//
// Memory is bounded: at most kCandidatesPerLabel × max + kSpareCandidates namespaces are
// tracked; past that, newcomers count as "other" until the next re-pick prunes the weakest.
//
// Threading: thread-safe (one mutex). The clock is injected for tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "tw/common/keys.h"

namespace tw::twd {

class NamespaceLabeller {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr uint32_t kCandidatesPerLabel = 4;
  static constexpr uint32_t kSpareCandidates = 64;
  static constexpr std::string_view kOther = "other";

  explicit NamespaceLabeller(uint32_t max,
                             std::chrono::nanoseconds interval = std::chrono::minutes(1),
                             std::function<Clock::time_point()> now = Clock::now);

  // Counts `chunks` of traffic for `digest` and returns its current label.
  std::string Count(const Key& digest, uint64_t chunks);
  // The current label, counting nothing.
  std::string Label(const Key& digest);
  // Raising `max` admits more labels at the next re-pick (or at once before the first);
  // lowering it demotes the weakest at the next re-pick.
  void SetMax(uint32_t max);
  // Namespaces labelled now.
  size_t labelled() const;
  // Namespaces tracked now (labelled or candidates).
  size_t tracked() const;

 private:
  struct Cand {
    double score = 0;     // decayed traffic of earlier intervals
    uint64_t window = 0;  // traffic of the current interval
    bool labelled = false;
    std::string label;  // the hex prefix (kept even while unlabelled)
  };
  std::string LabelLocked(const Key& digest, uint64_t chunks);
  void MaybeRepickLocked();
  void RepickLocked();

  mutable std::mutex mu_;
  uint32_t max_;
  const std::chrono::nanoseconds interval_;
  const std::function<Clock::time_point()> now_;
  Clock::time_point next_repick_;
  bool warm_ = false;  // a re-pick has happened
  size_t labelled_ = 0;
  absl::flat_hash_map<Key, Cand> cands_;
};

}  // namespace tw::twd
