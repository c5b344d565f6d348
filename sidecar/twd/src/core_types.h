// The requests and results of twd's service core (service_core.h), in the domain's words:
// keys (tw/common/keys.h), tiers, miss reasons and put results (tw/common/cache_types.h).
// A front (the Unix-socket codec today, a peer service later) builds these from its wire
// messages and turns the results back into wire messages; nothing here knows a wire format.
//
// Plain values: no threading rules. Lifetime: spans in a request point into the front's
// decoded message (or the client's arena) and must outlive the call that takes the request.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tw/common/cache_types.h"
#include "tw/common/keys.h"
#include "tw/protocol/fd_passing.h"
#include "tw/store/store.h"

namespace tw::twd {

using Clock = std::chrono::steady_clock;
using Deadline = store::Deadline;  // Deadline::max() = none

// A chunk key under a namespace.
struct ChunkRef {
  Key key;
  Key namespace_digest;
};

// One byte range of a value segment ↔ a byte range of the session's arena.
// REQUIRES (checked by the front before the core sees it): inside the arena.
struct ArenaRange {
  uint32_t segment = 0;
  uint64_t offset = 0;        // in the segment
  uint64_t length = 0;        // bytes
  uint64_t arena_offset = 0;  // in the arena
};

// ---- HELLO / DECLARE_NAMESPACES ---------------------------------------------------------

struct HelloRequest {
  uint32_t min_version = 0;
  uint32_t max_version = 0;
  std::string client_name;
  uint64_t arena_size = 0;              // 0 = no arena
  std::vector<protocol::UniqueFd> fds;  // what came with the request: none or one memfd
  std::vector<Namespace> namespaces;    // declared at once
};

// Limits a client must respect on its connection.
struct ConnectionLimits {
  uint32_t max_inflight = 0;
  uint32_t max_batch = 0;
  uint64_t max_frame_size = 0;
  uint64_t max_value_size = 0;
  uint64_t max_arena_size = 0;
  uint32_t max_leases = 0;
  uint64_t max_leased_bytes = 0;
  uint32_t max_namespaces = 0;
};

struct HelloResult {
  uint32_t version = 0;  // negotiated protocol version
  std::string server_version;
  std::string tenant;
  uint64_t session_id = 0;
  std::chrono::microseconds lease_duration{0};
  ConnectionLimits limits;
  std::vector<Key> namespace_digests;  // one per declared namespace, in order
};

// ---- LOOKUP -----------------------------------------------------------------------------

struct LookupChain {
  Key namespace_digest;
  std::span<const Key> keys;  // keys[0] is chunk 1
};

struct LookupItem {
  std::vector<LookupChain> chains;  // one per tensor-parallel rank
};

struct LookupRequest {
  std::vector<LookupItem> items;
  bool take_lease = false;
  Deadline deadline = Deadline::max();
};

struct LookupItemResult {
  size_t prefix = 0;                     // leading chunks stored for every chain
  MissReason miss = MissReason::kNone;   // why chunk `prefix` is missing
  std::vector<std::vector<Tier>> tiers;  // per chain: tiers of the first `prefix` chunks
  uint64_t lease = 0;                    // 0 = none
};

// ---- GET --------------------------------------------------------------------------------

struct GetItem {
  ChunkRef ref;
  std::vector<ArenaRange> ranges;  // empty: the whole value at arena_offset
  uint64_t arena_offset = 0;       // whole-value form
  uint64_t arena_length = 0;       // whole-value form: bytes available
  uint64_t lease = 0;              // 0 = none
};

struct GetRequest {
  std::vector<GetItem> items;
  Deadline deadline = Deadline::max();
};

struct GetItemResult {
  Tier tier = Tier::kNone;
  MissReason miss = MissReason::kNone;
  uint64_t bytes = 0;
  std::vector<uint64_t> segment_sizes;  // hits only
};

// ---- PUT --------------------------------------------------------------------------------

struct PutItem {
  ChunkRef ref;
  Key parent;  // the namespace digest for chunk 1
  std::string extra;
  std::vector<uint32_t> tokens;
  std::vector<uint64_t> segment_sizes;
  std::vector<ArenaRange> ranges;  // cover every segment byte once (checked by the front)
  Durability durability = Durability::kDefault;
};

struct PutRequest {
  std::vector<PutItem> items;
  Deadline deadline = Deadline::max();
};

struct PutItemResult {
  PutResult result = PutResult::kInvalid;
  std::string message;  // why, for kInvalid
};

// ---- EXISTS / DELETE --------------------------------------------------------------------

struct ExistsItemResult {
  bool exists = false;
  Tier tier = Tier::kNone;
  uint64_t value_size = 0;
  std::vector<uint64_t> segment_sizes;
};

// ---- STATS ------------------------------------------------------------------------------

// What STATS reports. Tier counters are the store's (a tier-level miss: a DRAM miss served
// from NVMe counts as a DRAM miss); `puts` and the request-level counters are the core's,
// the very events /metrics counts, so the two always agree.
struct ServiceStats {
  store::StoreStats store;
  uint64_t puts_by_result[kPutResultCount] = {};         // indexed by PutResult
  uint64_t get_hits = 0;                                 // get items served
  uint64_t get_misses_by_reason[kMissReasonCount] = {};  // get items missed, indexed by MissReason
  uint64_t connected_clients = 0;
  uint64_t live_leases = 0;
  std::string server_version;
  uint32_t version = 0;  // the session's protocol version (the newest without a session)
  uint64_t arena_size = 0;
  std::string tenant;
  std::string gpu;  // the GPU path's status line (Daemon; docs/gpu.md)
};

// ---- admin ------------------------------------------------------------------------------

struct NamespaceListing {
  store::NamespaceUsage usage;
  bool fields_known = false;  // a client declared the fields (kept across restarts)
  Namespace fields;
};

struct ExportRequest {
  bool filter_namespace = false;
  Key namespace_digest;  // with filter_namespace: only its chunks
  bool filter_key = false;
  Key key;                  // with filter_key: only this chunk
  uint64_t max_chunks = 0;  // 0 = all
};

struct ExportedChunk {
  const store::ChunkMeta* meta = nullptr;  // valid during the callback only
  const Namespace* fields = nullptr;       // nullptr when not known
};

}  // namespace tw::twd
