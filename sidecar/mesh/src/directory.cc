#include "tw/mesh/directory.h"

#include <algorithm>
#include <utility>

namespace tw::mesh {

Status Directory::Options::Validate() const {
  if (max_keys == 0) return InvalidArgumentError("directory.max_keys: must be > 0");
  if (max_holders_per_key == 0) {
    return InvalidArgumentError("directory.max_holders_per_key: must be > 0");
  }
  if (ttl <= std::chrono::nanoseconds::zero()) {
    return InvalidArgumentError("directory.ttl: must be > 0");
  }
  if (!now) return InvalidArgumentError("directory.now: must be set");
  return OkStatus();
}

Directory::Directory(Options options) : options_(std::move(options)) {}

void Directory::Apply(const UpdateBatch& batch) {
  const Clock::time_point now = options_.now();
  std::lock_guard<std::mutex> l(mu_);
  for (const Update& u : batch.updates) {
    switch (u.kind) {
      case UpdateKind::kAnnounce:
        AnnounceLocked(u.key, batch.from_node, now);
        break;
      case UpdateKind::kWithdraw:
        WithdrawLocked(u.key, batch.from_node);
        break;
    }
  }
}

void Directory::AnnounceLocked(const Key& key, const std::string& node, Clock::time_point now) {
  ++stats_.announces;
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= options_.max_keys) {
      // The least recently announced key makes room.
      auto victim = entries_.find(order_.front());
      stats_.holders -= victim->second.holders.size();
      EraseLocked(victim);
      ++stats_.evicted_keys;
    }
    order_.push_back(key);
    it = entries_.emplace(key, Entry{{}, std::prev(order_.end())}).first;
    ++stats_.keys;
  } else {
    order_.splice(order_.end(), order_, it->second.position);
  }
  std::vector<Holder>& holders = it->second.holders;
  auto same =
      std::find_if(holders.begin(), holders.end(), [&](const Holder& h) { return h.node == node; });
  if (same != holders.end()) {
    holders.erase(same);
  } else {
    ++stats_.holders;
    if (holders.size() >= options_.max_holders_per_key) {
      holders.pop_back();  // the least recently announced holder
      --stats_.holders;
      ++stats_.evicted_holders;
    }
  }
  holders.insert(holders.begin(), Holder{node, now});
}

void Directory::WithdrawLocked(const Key& key, const std::string& node) {
  ++stats_.withdraws;
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  std::vector<Holder>& holders = it->second.holders;
  auto n = std::erase_if(holders, [&](const Holder& h) { return h.node == node; });
  stats_.holders -= n;
  if (holders.empty()) EraseLocked(it);
}

void Directory::EraseLocked(absl::flat_hash_map<Key, Entry>::iterator it) {
  order_.erase(it->second.position);
  entries_.erase(it);
  --stats_.keys;
}

const std::vector<Directory::Holder>* Directory::FreshLocked(const Key& key,
                                                             Clock::time_point cutoff) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  std::vector<Holder>& holders = it->second.holders;
  // Most recent first: the stale ones are a suffix.
  auto stale = std::find_if(holders.begin(), holders.end(),
                            [&](const Holder& h) { return h.announced < cutoff; });
  const size_t dropped = static_cast<size_t>(holders.end() - stale);
  holders.erase(stale, holders.end());
  stats_.holders -= dropped;
  stats_.expired_holders += dropped;
  if (holders.empty()) {
    EraseLocked(it);
    ++stats_.expired_keys;
    return nullptr;
  }
  return &holders;
}

std::vector<std::vector<std::string>> Directory::Lookup(std::span<const Key> keys) {
  const Clock::time_point cutoff = options_.now() - options_.ttl;
  std::vector<std::vector<std::string>> out(keys.size());
  std::lock_guard<std::mutex> l(mu_);
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::vector<Holder>* holders = FreshLocked(keys[i], cutoff);
    if (holders == nullptr) continue;
    out[i].reserve(holders->size());
    for (const Holder& h : *holders) out[i].push_back(h.node);
  }
  return out;
}

void Directory::LookupPacked(std::span<const Key> keys, Packed* out) {
  const Clock::time_point cutoff = options_.now() - options_.ttl;
  out->nodes.clear();
  out->offsets.clear();
  out->holders.clear();
  out->offsets.reserve(keys.size() + 1);
  out->offsets.push_back(0);
  // Consecutive keys of a chain mostly share their holder: check the last one first. The
  // map's views point into the entries, stable while mu_ is held.
  absl::flat_hash_map<std::string_view, uint32_t> index;
  uint32_t last = 0;
  auto index_of = [&](const std::string& node) {
    if (!out->nodes.empty() && out->nodes[last] == node) return last;
    auto [it, inserted] = index.try_emplace(node, static_cast<uint32_t>(out->nodes.size()));
    if (inserted) out->nodes.push_back(node);
    last = it->second;
    return last;
  };
  std::lock_guard<std::mutex> l(mu_);
  for (const Key& key : keys) {
    if (const std::vector<Holder>* holders = FreshLocked(key, cutoff)) {
      for (const Holder& h : *holders) out->holders.push_back(index_of(h.node));
    }
    out->offsets.push_back(static_cast<uint32_t>(out->holders.size()));
  }
}

size_t Directory::Expire() {
  const Clock::time_point cutoff = options_.now() - options_.ttl;
  std::lock_guard<std::mutex> l(mu_);
  size_t dropped_keys = 0;
  while (!order_.empty()) {
    auto it = entries_.find(order_.front());
    std::vector<Holder>& holders = it->second.holders;
    // The key's newest holder is its last announcement: fresh means every later key is too.
    if (holders.front().announced >= cutoff) break;
    stats_.holders -= holders.size();
    stats_.expired_holders += holders.size();
    EraseLocked(it);
    ++stats_.expired_keys;
    ++dropped_keys;
  }
  return dropped_keys;
}

size_t Directory::ForgetNode(std::string_view node) {
  std::lock_guard<std::mutex> l(mu_);
  size_t dropped = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    std::vector<Holder>& holders = it->second.holders;
    auto n = std::erase_if(holders, [&](const Holder& h) { return h.node == node; });
    dropped += n;
    stats_.holders -= n;
    stats_.forgotten_holders += n;
    if (holders.empty()) {
      auto victim = it++;
      EraseLocked(victim);
    } else {
      ++it;
    }
  }
  return dropped;
}

Directory::Stats Directory::GetStats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

}  // namespace tw::mesh
