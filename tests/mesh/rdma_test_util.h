// Helpers for the RDMA transport tests: a ChunkSource over values held in memory, and value
// bytes that differ per key and offset.
#pragma once

#include <cstring>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "tw/mesh/transport.h"

namespace tw::mesh::testing {

inline std::vector<std::byte> Pattern(uint64_t seed, size_t n) {
  std::vector<std::byte> v(n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v[i] = static_cast<std::byte>(x);
  }
  return v;
}

// A holder's store: values by (namespace, key), each with its segment sizes.
class MemChunkSource final : public ChunkSource {
 public:
  void Put(const FetchSpec& spec, std::vector<std::byte> value, std::vector<uint64_t> segments) {
    std::lock_guard<std::mutex> l(mu_);
    values_[Id(spec)] = {std::move(value), std::move(segments)};
  }

  std::optional<uint64_t> ValueSize(const FetchSpec& spec) override {
    std::lock_guard<std::mutex> l(mu_);
    auto it = values_.find(Id(spec));
    if (it == values_.end()) return std::nullopt;
    return it->second.first.size();
  }

  FetchResult Read(const FetchSpec& spec, std::span<std::byte> dest, Deadline) override {
    std::lock_guard<std::mutex> l(mu_);
    FetchResult r;
    auto it = values_.find(Id(spec));
    if (it == values_.end()) {
      r.miss = MissReason::kAbsent;
      return r;
    }
    const auto& [value, segments] = it->second;
    r.segment_sizes = segments;
    if (dest.size() < value.size()) {
      r.miss = MissReason::kIoError;
      r.error = InvalidArgumentError("destination too small");
      return r;
    }
    if (!value.empty()) std::memcpy(dest.data(), value.data(), value.size());
    r.bytes = value.size();
    return r;
  }

 private:
  static std::pair<Key, Key> Id(const FetchSpec& s) { return {s.namespace_digest, s.key}; }
  std::mutex mu_;
  std::map<std::pair<Key, Key>, std::pair<std::vector<std::byte>, std::vector<uint64_t>>> values_;
};

}  // namespace tw::mesh::testing
