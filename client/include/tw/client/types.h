// Value types of libtwclient's C++ API: what a caller puts into a request and gets back.
//
// They mirror the wire messages of proto/tokenwarehouse/v1/client.proto without exposing
// protobuf: callers include this header only. Enum numbering equals the C ABI's
// (tw_client.h), so the C layer converts by cast.
//
// Plain values: copy and move freely; no threading rules.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "tw/common/cache_types.h"
#include "tw/common/keys.h"

namespace tw::client {

using ::tw::Durability;  // tw/common/cache_types.h
using ::tw::MissReason;
using ::tw::PutResult;
using ::tw::Tier;
using ::tw::ToString;

// One byte range of a value segment ↔ a byte range of the arena.
struct ScatterRange {
  uint32_t segment = 0;       // segment index
  uint64_t offset = 0;        // byte offset in the segment
  uint64_t length = 0;        // bytes (> 0)
  uint64_t arena_offset = 0;  // byte offset in the arena
};

// A chunk key under a namespace declared on this connection.
struct KeyRef {
  Key key;
  Key namespace_digest;
};

// One key chain of a lookup (one per tensor-parallel rank).
struct LookupChain {
  Key namespace_digest;
  std::vector<Key> keys;  // keys[0] is chunk 1
};

struct LookupReply {
  size_t prefix = 0;                     // leading chunks stored for every chain
  std::vector<std::vector<Tier>> tiers;  // per chain: tier of each of the first `prefix`
  MissReason miss = MissReason::kNone;   // why chunk `prefix` is missing
  uint64_t lease = 0;                    // 0 = none
};

struct GetItem {
  KeyRef ref;
  // Scatter list; empty = the whole value, segment after segment, at arena_offset.
  std::vector<ScatterRange> ranges;
  uint64_t arena_offset = 0;  // whole-value form
  uint64_t arena_length = 0;  // whole-value form: bytes available at arena_offset
  uint64_t lease = 0;         // optional lease from a lookup
};

struct GetReply {
  Tier tier = Tier::kNone;              // served from (kNone on a miss)
  MissReason miss = MissReason::kNone;  // kNone on a hit
  uint64_t bytes = 0;                   // bytes written into the arena
  std::vector<uint64_t> segment_sizes;  // hits only
};

struct PutItem {
  KeyRef ref;
  Key parent;                           // the namespace digest for chunk 1
  std::string extra;                    // the chunk's extra bytes
  std::vector<uint32_t> tokens;         // the chunk's token ids
  std::vector<uint64_t> segment_sizes;  // the value's segments
  std::vector<ScatterRange> ranges;     // cover every byte of every segment exactly once
  Durability durability = Durability::kDefault;
};

struct PutReply {
  PutResult result = PutResult::kInvalid;
  std::string message;  // detail for kInvalid
};

struct ExistsReply {
  bool exists = false;
  Tier tier = Tier::kNone;
  uint64_t value_size = 0;
  std::vector<uint64_t> segment_sizes;
};

// Counters of one tier (cumulative since twd started, gauges where said).
struct TierCounters {
  Tier tier = Tier::kNone;
  uint64_t hits = 0;
  std::map<std::string, uint64_t> misses;  // by miss reason name
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t evictions = 0;
  uint64_t io_errors = 0;
  uint64_t corrupt = 0;
  uint64_t used_bytes = 0;      // gauge
  uint64_t capacity_bytes = 0;  // gauge
  uint64_t chunks = 0;          // gauge
};

struct Stats {
  std::vector<TierCounters> tiers;
  std::map<std::string, uint64_t> puts;  // by put result name
  // Gets served and missed (by miss reason name), counted once per item by twd; the tiers'
  // hits and misses are the store's per-tier view.
  uint64_t get_hits = 0;
  std::map<std::string, uint64_t> get_misses;
  uint64_t dropped_unwritten = 0;
  uint64_t connected_clients = 0;
  uint64_t live_leases = 0;
  uint64_t inflight = 0;    // this connection
  uint64_t arena_size = 0;  // this connection
  std::string tenant;
  uint32_t version = 0;
  std::string server_version;
  std::string gpu;  // twd's GPU path in one line ("gpu off: <why>", ...)
};
// Stats as a JSON object (stable field names, the proto's).
std::string StatsToJson(const Stats& s, int indent = -1);

// What twd granted at hello.
struct SessionInfo {
  uint32_t version = 0;
  std::string server_version;
  std::vector<Key> namespace_digests;  // of the declared namespaces, in order
  std::string tenant;
  uint32_t max_inflight = 0;
  uint32_t max_batch = 0;
  uint64_t max_frame_size = 0;
  uint64_t max_value_size = 0;
  uint64_t lease_duration_us = 0;
  uint64_t session_id = 0;
};

}  // namespace tw::client
