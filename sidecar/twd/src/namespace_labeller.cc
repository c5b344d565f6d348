#include "namespace_labeller.h"

#include <algorithm>
#include <vector>

namespace tw::twd {

NamespaceLabeller::NamespaceLabeller(uint32_t max, std::chrono::nanoseconds interval,
                                     std::function<Clock::time_point()> now)
    : max_(max), interval_(interval), now_(std::move(now)), next_repick_(now_() + interval_) {}

std::string NamespaceLabeller::Count(const Key& digest, uint64_t chunks) {
  std::lock_guard lock(mu_);
  MaybeRepickLocked();
  return LabelLocked(digest, chunks);
}

std::string NamespaceLabeller::Label(const Key& digest) {
  std::lock_guard lock(mu_);
  MaybeRepickLocked();
  return LabelLocked(digest, 0);
}

void NamespaceLabeller::SetMax(uint32_t max) {
  std::lock_guard lock(mu_);
  max_ = max;
}

size_t NamespaceLabeller::labelled() const {
  std::lock_guard lock(mu_);
  return labelled_;
}

size_t NamespaceLabeller::tracked() const {
  std::lock_guard lock(mu_);
  return cands_.size();
}

std::string NamespaceLabeller::LabelLocked(const Key& digest, uint64_t chunks) {
  auto it = cands_.find(digest);
  if (it == cands_.end()) {
    if (cands_.size() >= size_t{kCandidatesPerLabel} * max_ + kSpareCandidates) {
      return std::string(kOther);
    }
    it = cands_.emplace(digest, Cand{}).first;
    it->second.label = digest.Hex().substr(0, 16);
    // Before the first re-pick there is no traffic history: first come, first labelled.
    if (!warm_ && labelled_ < max_) {
      it->second.labelled = true;
      ++labelled_;
    }
  }
  it->second.window += chunks;
  return it->second.labelled ? it->second.label : std::string(kOther);
}

void NamespaceLabeller::MaybeRepickLocked() {
  const Clock::time_point now = now_();
  if (now < next_repick_) return;
  RepickLocked();
  next_repick_ = now + interval_;
}

void NamespaceLabeller::RepickLocked() {
  warm_ = true;
  std::vector<std::pair<double, Key>> labelled, others;
  for (auto& [k, c] : cands_) {
    c.score = c.score / 2 + static_cast<double>(c.window);
    c.window = 0;
    (c.labelled ? labelled : others).emplace_back(c.score, k);
  }
  auto by_score = [](const auto& a, const auto& b) { return a.first > b.first; };
  std::sort(labelled.begin(), labelled.end(), by_score);
  std::sort(others.begin(), others.end(), by_score);
  auto set = [&](const Key& k, bool on) {
    Cand& c = cands_[k];
    if (c.labelled != on) {
      c.labelled = on;
      on ? ++labelled_ : --labelled_;
    }
  };
  // Namespaces gone quiet give their labels up; past a lowered max the weakest go.
  while (!labelled.empty() && (labelled.back().first < 1.0 || labelled.size() > max_)) {
    set(labelled.back().second, false);
    others.emplace_back(labelled.back());
    labelled.pop_back();
  }
  std::sort(others.begin(), others.end(), by_score);
  size_t next = 0;
  // Free slots go to the busiest unlabelled namespaces.
  while (labelled.size() < max_ && next < others.size() && others[next].first >= 1.0) {
    set(others[next].second, true);
    labelled.insert(std::upper_bound(labelled.begin(), labelled.end(), others[next], by_score),
                    others[next]);
    ++next;
  }
  // A full set changes only for a clear winner: more than twice the weakest label's score.
  while (!labelled.empty() && next < others.size() &&
         others[next].first > 2 * labelled.back().first) {
    set(labelled.back().second, false);
    labelled.pop_back();
    set(others[next].second, true);
    labelled.insert(std::upper_bound(labelled.begin(), labelled.end(), others[next], by_score),
                    others[next]);
    ++next;
  }
  // Keep memory bounded: forget the weakest unlabelled candidates beyond the allowance.
  const size_t keep = size_t{kCandidatesPerLabel} * max_;
  std::vector<std::pair<double, Key>> rest;
  for (const auto& [k, c] : cands_) {
    if (!c.labelled) rest.emplace_back(c.score, k);
  }
  if (rest.size() > keep) {
    std::sort(rest.begin(), rest.end(), by_score);
    for (size_t i = keep; i < rest.size(); ++i) cands_.erase(rest[i].second);
  }
}

}  // namespace tw::twd
