// tw::store::Store — the storage engine of twd: a DRAM tier over an NVMe tier, persistent
// across restarts and crashes, that never returns a corrupt byte. No networking here.
//
// What it stores: chunks. A chunk is its 32-byte key, its namespace digest, its parent key,
// its extra bytes and token ids (kept so prefixes can be exported), a small metadata record,
// and a value made of segments (normally one per layer, or per layer and K/V). Callers move
// bytes with scatter lists: each entry maps a byte range of one segment to caller memory, so
// an engine's non-contiguous per-layer KV is read and written in place.
//
// Threading: every public method is thread-safe and may be called from any number of threads
// at once. Calls are synchronous: they return when done, or at their deadline. A Get that
// misses on its deadline returns only after any I/O into the caller's memory has completed,
// so the caller may reuse that memory as soon as Get returns (a late read never lands in
// reused memory).
//
// Lifetime: Open() → use → Close(grace) (writes back memory-durability chunks within the
// grace period and leaves a clean summary) → destroy. Destroying without Close() is a crash
// as far as the on-disk state is concerned: the next Open() recovers.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tw/common/cache_types.h"
#include "tw/common/keys.h"
#include "tw/common/status.h"
#include "tw/store/options.h"

namespace tw::store {

using ::tw::MissReason;  // tw/common/cache_types.h
using ::tw::PutResult;
using ::tw::Tier;
using ::tw::ToString;

// One byte range of one segment ↔ caller memory.
struct ScatterEntry {
  uint32_t segment = 0;  // segment index
  uint64_t offset = 0;   // byte offset within the segment
  uint64_t length = 0;   // bytes
  void* addr = nullptr;  // caller memory: the source of a put, the destination of a get
};

// Everything about a chunk except its value bytes.
struct ChunkInfo {
  Key key;                              // k_j
  Key namespace_digest;                 // ns
  Key parent;                           // k_{j-1} (== namespace_digest for the first chunk)
  std::string extra;                    // the chunk's extra bytes
  std::vector<uint32_t> tokens;         // the chunk's token ids
  std::vector<uint64_t> segment_sizes;  // the value's segment sizes in bytes
};

struct PutRequest {
  ChunkInfo chunk;
  // Must cover every byte of every segment exactly once.
  std::vector<ScatterEntry> data;
  Durability durability = Durability::kMemory;
  Deadline deadline = Deadline::max();
};

// A read lease: keeps chunks from being reclaimed until it expires or is released.
using LeaseId = uint64_t;

struct GetResult {
  Tier tier = Tier::kNone;              // where it was served from
  MissReason miss = MissReason::kNone;  // kNone on a hit
  uint64_t bytes = 0;                   // bytes copied to the caller
  // The stored value's segment sizes, read from the record header the get reads anyway (on a
  // hit, and on a request that does not fit the value). Always set by Get(GetOptions).
  std::vector<uint64_t> segment_sizes;
  // Why a request for a stored chunk could not be served
  // as asked (then miss is kIoError; not counted as a device error): InvalidArgument, for a
  // range outside the stored value or a whole-chunk destination smaller than the value (the
  // message and segment_sizes say how much is needed).
  Status error;
};

// Options of Get(key, ranges, GetOptions): a get that needs no Stat first.
struct GetOptions {
  Deadline deadline = Deadline::max();
  LeaseId lease = 0;  // see Get()
  // When set, a chunk stored under another namespace reads as absent (tenant isolation).
  std::optional<Key> namespace_digest;
  // Whole-chunk mode: `ranges` must be empty; every segment of the value is copied, back to
  // back in segment order, to `dest`, which holds `capacity` bytes. GetResult::segment_sizes
  // says where each segment landed.
  bool whole_chunk = false;
  void* dest = nullptr;
  uint64_t capacity = 0;
};

// What the index alone knows of a stored chunk (Peek). No I/O.
struct ChunkPeek {
  Key namespace_digest;
  Tier tier = Tier::kNone;    // kDram when in DRAM (possibly also on NVMe)
  uint64_t record_bytes = 0;  // stored size: header + segments padded to 4 KiB (>= value size)
};

struct LookupResult {
  size_t prefix = 0;                    // number of leading keys of the chain that are stored
  std::vector<Tier> tiers;              // tier of each of the first `prefix` chunks
  MissReason miss = MissReason::kNone;  // why chain[prefix] is not stored (if prefix < size)
  LeaseId lease = 0;                    // 0 when no lease was asked for or nothing was found
};

// A chunk the store evicted (TakeEvicted).
struct EvictedChunk {
  Key key;
  Key namespace_digest;
};

// Metadata of a stored chunk (Stat/Export).
struct ChunkMeta {
  ChunkInfo info;
  uint64_t value_size = 0;
  Tier tier = Tier::kNone;
  int64_t created_unix_ms = 0;
  int64_t last_access_unix_ms = 0;
};

struct NamespaceUsage {
  Key namespace_digest;
  uint64_t chunks = 0;
  uint64_t bytes = 0;
  uint64_t quota = 0;  // 0 = none
};

// Counters of one tier. Cumulative since Open() unless said otherwise.
struct TierStats {
  uint64_t hits = 0;
  uint64_t misses_by_reason[kMissReasonCount] = {};  // indexed by MissReason
  uint64_t bytes_read = 0;                           // bytes served from this tier
  uint64_t bytes_written = 0;                        // bytes written into this tier
  uint64_t evictions = 0;                            // chunks evicted (DRAM: demoted or dropped)
  uint64_t io_errors = 0;
  uint64_t corrupt = 0;         // records that failed a checksum
  uint64_t used_bytes = 0;      // gauge
  uint64_t capacity_bytes = 0;  // gauge
  uint64_t chunks = 0;          // gauge
};

struct StoreStats {
  TierStats dram;
  TierStats nvme;
  uint64_t puts_by_result[kPutResultCount] = {};  // indexed by PutResult
  uint64_t dropped_unwritten = 0;  // memory-durability chunks dropped before write-back
  uint64_t index_bytes = 0;        // DRAM used by the index and its side tables (gauge)
  uint64_t promotions = 0;         // chunks copied from NVMe into DRAM by gets
  uint64_t rewrites = 0;           // chunks rewritten by NVMe reclaim (children or read)
};

class Store {
 public:
  // Opens (formatting empty paths, recovering existing stores). Fails with a clear error on
  // options that do not validate, on a foreign store or unknown format version (never
  // overwriting it) unless force_format, and when another process holds a data path.
  static StatusOr<std::unique_ptr<Store>> Open(const Options& options);

  virtual ~Store() = default;

  // Stores a chunk. Never blocks past request.deadline.
  virtual PutResult Put(const PutRequest& request) = 0;

  // Copies the requested ranges of a chunk into caller memory. `lease` (optional) must be a
  // live lease from Lookup; without one the chunk is pinned for the duration of the call.
  virtual GetResult Get(const Key& key, std::span<const ScatterEntry> ranges,
                        Deadline deadline = Deadline::max(), LeaseId lease = 0) = 0;
  // The same, with a namespace check and a whole-chunk mode (GetOptions), and the stored
  // segment sizes in the result: no Stat() needed before it. The default implementation
  // (for test doubles) calls Stat() and the Get() above.
  virtual GetResult Get(const Key& key, std::span<const ScatterEntry> ranges,
                        const GetOptions& options);
  // What the index knows of a chunk, without I/O: namespace, tier, stored size. nullopt when
  // not stored. It verifies the full key only of a chunk in DRAM (for one only on NVMe, a
  // tag collision, ~n/2^64, can answer for another chunk; Get() and Stat() always verify).
  // The default implementation calls Stat().
  virtual std::optional<ChunkPeek> Peek(const Key& key);

  // The longest stored prefix of `chain` (chain[0] is chunk 1, whose parent is the
  // namespace). A hit on chunk j counts as a hit on its ancestors. With `take_lease`, the
  // found chunks are leased for Options::lease_duration (store time: Options::now).
  virtual LookupResult Lookup(std::span<const Key> chain, bool take_lease) = 0;
  virtual void ReleaseLease(LeaseId lease) = 0;

  virtual std::optional<ChunkMeta> Stat(const Key& key) = 0;
  // Removes a chunk (and, being unreachable, none of its descendants). With an NVMe tier it
  // returns once a tombstone makes the deletion durable: the chunk stays deleted across
  // restarts and crashes, and a later put of the key is kept. False if absent, or when the
  // tombstone could not be written (the chunk is gone now but may come back after a restart).
  virtual bool Delete(const Key& key) = 0;
  // Delete of many keys; element i answers for keys[i]. Every tombstone is sequenced before
  // any is waited for, so they share group commits instead of one sync per key in turn.
  virtual std::vector<bool> DeleteMany(std::span<const Key> keys);
  // Removes every chunk of a namespace; returns how many. Durable like Delete (one tombstone
  // for the namespace); a put into the namespace that runs concurrently may be evicted by the
  // next restart.
  virtual uint64_t EvictNamespace(const Key& namespace_digest) = 0;
  virtual std::vector<NamespaceUsage> Namespaces() = 0;
  // Calls `fn` for every stored chunk (no value bytes). Stops early when fn returns false.
  virtual void Export(const std::function<bool(const ChunkMeta&)>& fn) = 0;

  virtual StoreStats Stats() = 0;
  // With Options::report_evictions: up to `max` chunks evicted since the last call (to make
  // room, for a quota, by NVMe reclaim; not deletes), oldest first. Only evictions whose full
  // key the store holds without I/O are reported: chunks resident in DRAM, and chunks dropped
  // by NVMe reclaim (their region summary names them); a chunk only on NVMe evicted by its
  // namespace's quota is not. Cheap: a vector swap under the store's lock.
  virtual std::vector<EvictedChunk> TakeEvicted(size_t max) {
    (void)max;
    return {};
  }
  // Applies run-time changes (quotas, admission); other fields are ignored.
  virtual Status Reconfigure(const Options& options) = 0;

  // Writes back memory-durability chunks for up to `grace`, writes a clean summary.
  virtual Status Close(std::chrono::nanoseconds grace) = 0;
};

// Default implementations, inline so that test doubles need not link the engine.
inline GetResult Store::Get(const Key& key, std::span<const ScatterEntry> ranges,
                            const GetOptions& options) {
  GetResult res;
  auto meta = Stat(key);
  if (!meta) {
    // Not stored: a one-key lookup says why (absent, or evicted while remembered).
    const LookupResult lr = Lookup(std::span<const Key>(&key, 1), false);
    res.miss = lr.prefix == 0 && lr.miss != MissReason::kNone ? lr.miss : MissReason::kAbsent;
    return res;
  }
  if (options.namespace_digest && meta->info.namespace_digest != *options.namespace_digest) {
    res.miss = MissReason::kAbsent;
    return res;
  }
  res.segment_sizes = meta->info.segment_sizes;
  std::vector<ScatterEntry> whole;
  if (options.whole_chunk) {
    if (meta->value_size > options.capacity || !ranges.empty()) {
      res.miss = MissReason::kIoError;
      res.error = InvalidArgumentError("whole-chunk get: value of " +
                                       std::to_string(meta->value_size) + " bytes does not fit " +
                                       std::to_string(options.capacity) + " bytes");
      return res;
    }
    uint64_t at = 0;
    for (uint32_t i = 0; i < res.segment_sizes.size(); ++i) {
      whole.push_back({i, 0, res.segment_sizes[i], static_cast<uint8_t*>(options.dest) + at});
      at += res.segment_sizes[i];
    }
    ranges = whole;
  }
  for (const ScatterEntry& r : ranges) {
    if (r.segment >= res.segment_sizes.size() || r.offset > res.segment_sizes[r.segment] ||
        r.length > res.segment_sizes[r.segment] - r.offset) {
      res.miss = MissReason::kIoError;
      res.error = InvalidArgumentError("get: a range lies outside the stored value");
      return res;
    }
  }
  GetResult g = Get(key, ranges, options.deadline, options.lease);
  if (g.miss == MissReason::kNone) g.segment_sizes = std::move(res.segment_sizes);
  return g;
}

inline std::vector<bool> Store::DeleteMany(std::span<const Key> keys) {
  std::vector<bool> out;
  out.reserve(keys.size());
  for (const Key& k : keys) out.push_back(Delete(k));
  return out;
}

inline std::optional<ChunkPeek> Store::Peek(const Key& key) {
  auto meta = Stat(key);
  if (!meta) return std::nullopt;
  ChunkPeek p;
  p.namespace_digest = meta->info.namespace_digest;
  p.tier = meta->tier;
  p.record_bytes = meta->value_size;
  return p;
}

}  // namespace tw::store
