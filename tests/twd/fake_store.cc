#include "fake_store.h"

#include <cstring>
#include <thread>

namespace tw::twd::testing {

store::PutResult FakeStore::Put(const store::PutRequest& r) {
  if (force_put) return *force_put;
  std::vector<std::string> segs;
  for (uint64_t s : r.chunk.segment_sizes) segs.emplace_back(s, '\0');
  uint64_t bytes = 0;
  for (const auto& e : r.data) {
    std::memcpy(segs.at(e.segment).data() + e.offset, e.addr, e.length);
    bytes += e.length;
  }
  std::lock_guard lock(mu_);
  if (chunks_.contains(r.chunk.key)) {
    stats_.puts_by_result[1]++;
    return store::PutResult::kExists;
  }
  chunks_[r.chunk.key] = Chunk{r.chunk, std::move(segs),
                               std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count()};
  ghosts_.erase(r.chunk.key);
  stats_.puts_by_result[0]++;
  stats_.dram.bytes_written += bytes;
  return store::PutResult::kStored;
}

store::GetResult FakeStore::Get(const Key& key, std::span<const store::ScatterEntry> ranges,
                                store::Deadline deadline, store::LeaseId) {
  if (get_delay.count() > 0) std::this_thread::sleep_for(get_delay);
  std::lock_guard lock(mu_);
  store::GetResult g;
  if (store::Clock::now() >= deadline) {
    g.miss = store::MissReason::kDeadline;
    return g;
  }
  auto it = chunks_.find(key);
  if (it == chunks_.end()) {
    g.miss = ghosts_.contains(key) ? store::MissReason::kEvicted : store::MissReason::kAbsent;
    stats_.dram.misses_by_reason[static_cast<int>(g.miss)]++;
    return g;
  }
  for (const auto& e : ranges) {
    std::memcpy(e.addr, it->second.segments.at(e.segment).data() + e.offset, e.length);
    g.bytes += e.length;
  }
  g.tier = store::Tier::kDram;
  stats_.dram.hits++;
  stats_.dram.bytes_read += g.bytes;
  return g;
}

store::LookupResult FakeStore::Lookup(std::span<const Key> chain, bool take_lease) {
  std::lock_guard lock(mu_);
  store::LookupResult r;
  for (const Key& k : chain) {
    if (!chunks_.contains(k)) {
      r.miss = ghosts_.contains(k) ? store::MissReason::kEvicted : store::MissReason::kAbsent;
      break;
    }
    r.tiers.push_back(store::Tier::kDram);
    ++r.prefix;
  }
  if (take_lease && r.prefix > 0) {
    r.lease = next_lease_++;
    leases_.insert(r.lease);
  }
  return r;
}

void FakeStore::ReleaseLease(store::LeaseId lease) {
  std::lock_guard lock(mu_);
  leases_.erase(lease);
}

std::optional<store::ChunkMeta> FakeStore::Stat(const Key& key) {
  std::lock_guard lock(mu_);
  auto it = chunks_.find(key);
  if (it == chunks_.end()) return std::nullopt;
  store::ChunkMeta m;
  m.info = it->second.info;
  for (uint64_t s : m.info.segment_sizes) m.value_size += s;
  m.tier = store::Tier::kDram;
  m.created_unix_ms = it->second.created_ms;
  return m;
}

bool FakeStore::Delete(const Key& key) {
  std::lock_guard lock(mu_);
  return chunks_.erase(key) > 0;
}

uint64_t FakeStore::EvictNamespace(const Key& ns) {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (auto it = chunks_.begin(); it != chunks_.end();) {
    if (it->second.info.namespace_digest == ns) {
      ghosts_.insert(it->first);
      it = chunks_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  stats_.dram.evictions += n;
  return n;
}

std::vector<store::NamespaceUsage> FakeStore::Namespaces() {
  std::lock_guard lock(mu_);
  std::map<Key, store::NamespaceUsage> by;
  for (const auto& [k, c] : chunks_) {
    auto& u = by[c.info.namespace_digest];
    u.namespace_digest = c.info.namespace_digest;
    u.chunks++;
    for (uint64_t s : c.info.segment_sizes) u.bytes += s;
  }
  std::vector<store::NamespaceUsage> out;
  for (auto& [k, u] : by) out.push_back(u);
  return out;
}

void FakeStore::Export(const std::function<bool(const store::ChunkMeta&)>& fn) {
  std::vector<store::ChunkMeta> metas;
  {
    std::lock_guard lock(mu_);
    for (const auto& [k, c] : chunks_) {
      store::ChunkMeta m;
      m.info = c.info;
      for (uint64_t s : m.info.segment_sizes) m.value_size += s;
      m.tier = store::Tier::kDram;
      metas.push_back(std::move(m));
    }
  }
  for (const auto& m : metas) {
    if (!fn(m)) return;
  }
}

store::StoreStats FakeStore::Stats() {
  std::lock_guard lock(mu_);
  store::StoreStats s = stats_;
  s.dram.chunks = chunks_.size();
  s.dram.capacity_bytes = uint64_t{1} << 30;
  return s;
}

Status FakeStore::Reconfigure(const store::Options&) {
  reconfigures++;
  return OkStatus();
}

Status FakeStore::Close(std::chrono::nanoseconds) {
  closes++;
  return OkStatus();
}

size_t FakeStore::live_leases() {
  std::lock_guard lock(mu_);
  return leases_.size();
}

size_t FakeStore::chunks() {
  std::lock_guard lock(mu_);
  return chunks_.size();
}

}  // namespace tw::twd::testing
