// The mesh's data path: how the bytes of a chunk held by another node reach this node.
//
// A `Transport` moves the whole value of one chunk from a holder into caller memory on the
// requesting node. Two implementations: TCP (always available) and RDMA verbs (where both
// peers have a device). The requesting twd picks one per peer pair at connect time
// (`mesh.transport: auto|tcp|rdma`). On the holder, a transport serves peers from a
// `ChunkSource`, the local store as a peer may see it: only under the namespace a chunk was
// stored in, never past the request's deadline.
//
// The deadline rule is the local path's: when Fetch returns, nothing more is written into the
// destination, whatever the outcome (an abandoned RDMA READ is fenced or its QP reset before
// Fetch returns; an abandoned TCP stream is closed). A peer that is down or slow costs a
// caller at most its deadline and yields a miss with reason `peer_unreachable`; a failing peer
// never delays transfers to healthy ones.
//
// Threading: every method of Transport and ChunkSource may be called from any number of
// threads at once. Lifetime: a Transport outlives every Fetch in flight; memory registered
// with RegisterMemory stays valid until UnregisterMemory returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tw/common/cache_types.h"
#include "tw/common/keys.h"
#include "tw/common/status.h"
#include "tw/mesh/membership.h"
#include "tw/mesh/mesh_types.h"

namespace tw::mesh {

using Deadline = Clock::time_point;  // Deadline::max() = none

enum class TransportKind : uint8_t {
  kTcp = 0,
  kRdma = 1,
};
std::string_view ToString(TransportKind kind);

// One chunk asked of a holder. The holder serves it only when it is stored under
// `namespace_digest` (tenancy across nodes: the requesting twd has checked the client's
// tenant against that namespace).
struct FetchSpec {
  Key namespace_digest;
  Key key;

  friend bool operator==(const FetchSpec&, const FetchSpec&) = default;
};

// Where a chunk sits in its chain: what a requester needs to keep a local copy that links into
// its chains (the store's parent check). It verifies key == ChunkKey(parent, extra, tokens)
// before trusting it.
struct ChunkLineage {
  Key parent;
  std::string extra;
  std::vector<uint32_t> tokens;
};

// The outcome of one fetch, as the requesting twd reports it to its client.
struct FetchResult {
  MissReason miss = MissReason::kNone;  // kNone: the whole value is in the destination
  uint64_t bytes = 0;                   // value bytes written (hits only)
  std::vector<uint64_t> segment_sizes;  // the value's segments, back to back (hits only)
  // The chunk's lineage (hits, when the transport carries it; TCP does).
  std::optional<ChunkLineage> lineage;
  // Detail for logs and `twctl peers` when miss != kNone (e.g. which peer, which error).
  Status error;
};

// The holder side: the local store as a transport serving peers sees it.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;

  // Size in bytes of the stored value of `spec`, or nullopt when it is not stored under that
  // namespace. No I/O where the index knows.
  virtual std::optional<uint64_t> ValueSize(const FetchSpec& spec) = 0;

  // Copies the whole value of `spec`, segments back to back, into `dest`. Same outcomes as the
  // local whole-chunk get: a miss with its reason (absent, evicted, corrupt, deadline, ...), or
  // InvalidArgument in `error` when `dest` is too small (segment_sizes then says how much is
  // needed). Nothing is written into `dest` after it returns.
  virtual FetchResult Read(const FetchSpec& spec, std::span<std::byte> dest, Deadline deadline) = 0;
};

// Per-peer link state, for metrics and `twctl peers`.
struct LinkStats {
  std::string node;
  TransportKind kind = TransportKind::kTcp;
  bool up = true;  // false while the peer is in its cool-off period after a failure
  uint64_t fetches = 0;
  uint64_t failures = 0;
  uint64_t bytes_in = 0;   // value bytes received from the peer
  uint64_t bytes_out = 0;  // value bytes served to the peer
  std::string last_error;  // "" when none
};

// The requesting side.
class Transport {
 public:
  virtual ~Transport() = default;

  virtual TransportKind kind() const = 0;

  // Moves the whole value of `spec` from `holder` into `dest` (segments back to back).
  // Blocks until done or `deadline`. A holder that is down, in cool-off or does not answer in
  // time gives miss = kPeerUnreachable; one that no longer holds the chunk gives its reason
  // (kAbsent or kEvicted); a value larger than `dest` gives kIoError with InvalidArgument in
  // `error` and segment_sizes set. Nothing is written into `dest` after Fetch returns.
  virtual FetchResult Fetch(const Peer& holder, const FetchSpec& spec, std::span<std::byte> dest,
                            Deadline deadline) = 0;

  // Memory a fetch may land in directly (client arenas, the DRAM tier, staging buffers).
  // Transports that need registration (RDMA) register it here, once; others accept and
  // ignore it. Fetch into unregistered memory still works (through a staging copy).
  virtual Status RegisterMemory(void* base, size_t length) {
    (void)base;
    (void)length;
    return OkStatus();
  }
  virtual void UnregisterMemory(void* base) { (void)base; }

  // One entry per peer this transport has talked to.
  virtual std::vector<LinkStats> Links() const = 0;
};

}  // namespace tw::mesh
