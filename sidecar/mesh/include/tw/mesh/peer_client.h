// PeerClient: this node's calls to the other nodes' peer services (gRPC, peer.proto), in the
// mesh's domain types. One cached channel per peer (re-made when the peer's address changes),
// every call under a deadline (the caller's, cut to `call_timeout`), no retries.
//
// Failure handling, so that one bad peer never costs more than its deadline and never causes a
// retry storm: a call that fails because the peer is unreachable (gRPC UNAVAILABLE) or slow
// (DEADLINE_EXCEEDED with the whole call_timeout spent) puts the peer into a cool-off of
// `cooloff_initial`, doubling with each consecutive failure up to `cooloff_max`. During the
// cool-off every call to the peer fails at once with UNAVAILABLE, without touching the network.
// When it ends, exactly one call (the probe) goes out; the others keep failing fast until the
// probe succeeds (the peer is up again) or fails (a longer cool-off). Errors the peer answered
// with (a bad request, a refused certificate) do not mark it down. gRPC's own reconnect
// backoff runs under this, capped at cooloff_max.
//
// Transport: a peer whose Health names a raw-wire port (docs/mesh.md "The raw wire") is asked
// Locate and Fetch on persistent TCP connections (wire_client.h) unless TLS is configured;
// otherwise, and for the other calls, gRPC. The cool-off rules are the same on both.
//
// Threading: every method may be called from any number of threads. One mutex guards the
// per-peer table; no call holds it across the network. Lifetime: channels live until the
// client is destroyed; calls in flight must return first.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tw/common/status.h"
#include "tw/mesh/membership.h"
#include "tw/mesh/mesh_types.h"
#include "tw/mesh/peer_tls.h"
#include "tw/mesh/transport.h"

namespace tw::mesh {

class PeerClient {
 public:
  struct Options {
    // This node's name (sent as from_node).
    std::string self;
    // Longest any one call may take, whatever the caller's deadline (mesh.peer_timeout).
    std::chrono::nanoseconds call_timeout = std::chrono::milliseconds(200);
    // Cool-off after a peer's first failure; doubles per consecutive failure up to the max.
    std::chrono::nanoseconds cooloff_initial = std::chrono::milliseconds(250);
    std::chrono::nanoseconds cooloff_max = std::chrono::seconds(10);
    // Clock of the cool-off bookkeeping (tests advance a fake one). gRPC deadlines are real
    // time.
    NowFn now = Clock::now;
    // Mutual TLS (disabled: plain text).
    PeerTls tls;

    // INVALID_ARGUMENT naming the field (self empty, a duration not positive, initial > max).
    Status Validate() const;
  };

  // One home's share of a batched Locate.
  struct LocateCall {
    const Peer* peer = nullptr;
    std::span<const Key> dir_keys;
  };
  // Per directory key, its holders (most recent first), packed: each holder's name once, and
  // per key indices into them (no container per key: a 512-key answer costs a few
  // allocations, not 512).
  struct Holders {
    std::vector<std::string> names;
    std::vector<uint32_t> offsets{0};  // keys + 1 entries: key k's indices are
    std::vector<uint32_t> index;       // index[offsets[k] .. offsets[k + 1])
    size_t size() const { return offsets.size() - 1; }
    // Key k's holders' names (tests, logs).
    std::vector<std::string> operator[](size_t k) const {
      std::vector<std::string> out;
      for (uint32_t j = offsets[k]; j < offsets[k + 1]; ++j) out.push_back(names[index[j]]);
      return out;
    }
  };

  struct ConnectReply {
    std::string node;
    std::vector<std::string> transports;
    std::string transport_data;
  };

  struct Stats {
    uint64_t calls = 0;       // calls that went out on the network
    uint64_t fast_fails = 0;  // calls refused at once: the peer was in cool-off
    uint64_t failures = 0;    // calls that went out and failed
  };

  // REQUIRES: options.Validate() is OK.
  explicit PeerClient(Options options);
  ~PeerClient();
  PeerClient(const PeerClient&) = delete;
  PeerClient& operator=(const PeerClient&) = delete;

  // Sends one holder's batch to a home.
  Status Update(const Peer& home, const UpdateBatch& batch, Deadline deadline);

  // Sends every call at once and waits for all of them (or the deadline): one round trip for
  // the slowest home, not the sum. Element i answers calls[i]; a failed or cooled-off home is
  // an error status (UNAVAILABLE / DEADLINE_EXCEEDED).
  std::vector<StatusOr<Holders>> LocateMany(std::span<const LocateCall> calls, Deadline deadline);

  // The TCP data path: streams the value of `spec` from `holder` straight into `dest`, message
  // by message (no buffer of the whole value). Transport::Fetch's contract: on return nothing
  // more is written into `dest`; a dead, cooled-off or slow holder is kPeerUnreachable; a value
  // larger than `dest` is kIoError with InvalidArgument and segment_sizes.
  FetchResult Fetch(const Peer& holder, const FetchSpec& spec, std::span<std::byte> dest,
                    Deadline deadline);

  // Exchange of transport capabilities and connection data.
  StatusOr<ConnectReply> Connect(const Peer& peer, std::vector<std::string> transports,
                                 std::string transport_data, Deadline deadline);

  // The peer's node name (a liveness probe).
  StatusOr<std::string> Health(const Peer& peer, Deadline deadline);

  // True while `node` cools off after a failure (calls to it would fail at once).
  bool CoolingOff(const std::string& node) const;

  // Per peer called so far: up/down, fetches, failures, bytes received, last error.
  std::vector<LinkStats> Links() const;
  Stats GetStats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tw::mesh
