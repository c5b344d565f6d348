// FakeStore: an in-memory tw::store::Store for twd's service tests (test code only, never
// linked into twd). Chunks live in a map; values are copied in and out through the scatter
// lists exactly as the real engine does, so arena handling is exercised for real.
//
// Knobs let a test force put results, slow gets down (deadline paths) and see leases.
// Threading: every method is thread-safe (one mutex). Lifetime: plain object.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tw/store/store.h"

namespace tw::twd::testing {

class FakeStore : public store::Store {
 public:
  store::PutResult Put(const store::PutRequest& request) override;
  store::GetResult Get(const Key& key, std::span<const store::ScatterEntry> ranges,
                       store::Deadline deadline, store::LeaseId lease) override;
  store::LookupResult Lookup(std::span<const Key> chain, bool take_lease) override;
  void ReleaseLease(store::LeaseId lease) override;
  std::optional<store::ChunkMeta> Stat(const Key& key) override;
  bool Delete(const Key& key) override;
  uint64_t EvictNamespace(const Key& namespace_digest) override;
  std::vector<store::NamespaceUsage> Namespaces() override;
  void Export(const std::function<bool(const store::ChunkMeta&)>& fn) override;
  store::StoreStats Stats() override;
  Status Reconfigure(const store::Options& options) override;
  Status Close(std::chrono::nanoseconds grace) override;

  // Knobs.
  std::optional<store::PutResult> force_put;  // answer every put with this
  std::chrono::milliseconds get_delay{0};     // each Get sleeps this long first
  std::atomic<int> reconfigures{0};
  std::atomic<int> closes{0};
  size_t live_leases();
  size_t chunks();

 private:
  struct Chunk {
    store::ChunkInfo info;
    std::vector<std::string> segments;
    int64_t created_ms = 0;
  };
  std::mutex mu_;
  std::map<Key, Chunk> chunks_;
  std::set<Key> ghosts_;
  std::set<store::LeaseId> leases_;
  store::LeaseId next_lease_ = 1;
  store::StoreStats stats_;
};

}  // namespace tw::twd::testing
