// FakeChunkSource: an in-memory ChunkSource for the peer service's tests, with one injected
// fault: Stall() makes every Read block until Release() (a holder that hangs mid-fetch).
//
// Threading: every method may be called from any thread (the server reads on gRPC's threads).
// Lifetime: Release() before destroying it while a read may be blocked.
#pragma once

#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "tw/mesh/transport.h"

namespace tw::mesh::testing {

class FakeChunkSource final : public ChunkSource {
 public:
  struct Chunk {
    std::vector<std::vector<std::byte>> segments;
    ChunkLineage lineage;
  };

  void Add(const FetchSpec& spec, Chunk chunk) {
    std::lock_guard l(mu_);
    chunks_[{spec.namespace_digest, spec.key}] = std::move(chunk);
  }
  void Stall() {
    std::lock_guard l(mu_);
    stalled_ = true;
  }
  void Release() {
    std::lock_guard l(mu_);
    stalled_ = false;
    cv_.notify_all();
  }
  // Reads that have begun blocking in Stall().
  int stalled_reads() const {
    std::lock_guard l(mu_);
    return stalled_reads_;
  }
  // Waits until `n` reads are blocked in Stall().
  void WaitStalled(int n) {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return stalled_reads_ >= n; });
  }
  int reads() const {
    std::lock_guard l(mu_);
    return reads_;
  }

  std::optional<uint64_t> ValueSize(const FetchSpec& spec) override {
    std::lock_guard l(mu_);
    auto it = chunks_.find({spec.namespace_digest, spec.key});
    if (it == chunks_.end()) return std::nullopt;
    uint64_t n = 0;
    for (const auto& s : it->second.segments) n += s.size();
    return n;
  }

  FetchResult Read(const FetchSpec& spec, std::span<std::byte> dest, Deadline) override {
    std::unique_lock l(mu_);
    reads_++;
    if (stalled_) {
      stalled_reads_++;
      cv_.notify_all();
      cv_.wait(l, [&] { return !stalled_; });
    }
    FetchResult r;
    auto it = chunks_.find({spec.namespace_digest, spec.key});
    if (it == chunks_.end()) {
      r.miss = MissReason::kAbsent;
      return r;
    }
    uint64_t at = 0;
    for (const auto& s : it->second.segments) r.segment_sizes.push_back(s.size());
    for (uint64_t s : r.segment_sizes) at += s;
    if (at > dest.size()) {
      r.miss = MissReason::kIoError;
      r.error = InvalidArgumentError("does not fit");
      return r;
    }
    at = 0;
    for (const auto& s : it->second.segments) {
      if (!s.empty()) std::memcpy(dest.data() + at, s.data(), s.size());
      at += s.size();
    }
    r.bytes = at;
    r.lineage = it->second.lineage;
    return r;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<Key, Key>, Chunk> chunks_;  // GUARDED_BY(mu_)
  bool stalled_ = false;                         // GUARDED_BY(mu_)
  int stalled_reads_ = 0;                        // GUARDED_BY(mu_)
  int reads_ = 0;                                // GUARDED_BY(mu_)
};

// Bytes that differ at every offset and from chunk to chunk.
inline std::vector<std::byte> Pattern(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<uint8_t>(i * 131 + seed + (i >> 9)));
  return v;
}

}  // namespace tw::mesh::testing
