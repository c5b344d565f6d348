// The RDMA transport's control plane: the few messages two nodes exchange before and around
// one-sided READs. The peer service carries them (its Connect rpc, among others); this header
// names only what they mean, so the transport is tested with an in-process control
// (testing/in_process_control.h) and knows nothing of gRPC.
//
// Requester → holder:
// - Connect: "here is my queue pair for our pair; build (or rebuild) yours towards it and
//   give me its endpoint". Only the node whose name sorts first sends Connect for a pair, so
//   two nodes never build the pair's connection from both ends at once.
// - RequestConnect: sent by the node whose name sorts second when it needs the pair's
//   connection: "send me a Connect". It names the asked node's queue pair it was last connected
//   to and found failed (0: none). The asked node rebuilds only when that is its current queue
//   pair, or when it has none; otherwise it answers the connection it has (both queue pair
//   numbers), and the requester, if that is not its own current queue pair (it restarted, or
//   the answer raced with a rebuild), asks once more naming it. So a RequestConnect that
//   crosses the first node's own Connect never tears down the connection just built.
// - PrepareRead: "put this chunk where I can READ it": the holder copies the value into its
//   registered staging ring and answers its address, rkey, length and segment sizes, and a
//   token. The staged copy stays until Release(token) or the grant's TTL.
// - Release: "I am done reading that grant" (best effort; the TTL covers a lost one).
//
// Threading: every method may be called from any thread at once. An implementation never
// calls back into the caller's transport on the caller's thread while the caller holds a lock
// (the transport holds none across these calls).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tw/common/cache_types.h"
#include "tw/common/status.h"
#include "tw/mesh/membership.h"
#include "tw/mesh/rdma/verbs.h"
#include "tw/mesh/transport.h"

namespace tw::mesh::rdma {

// The pair's connection as the node asked by RequestConnect has it after answering.
struct RequestConnectReply {
  uint32_t holder_qpn = 0;     // its queue pair for the pair
  uint32_t requester_qpn = 0;  // the requester's queue pair that one is connected to
};

struct ConnectRequest {
  std::string from_node;  // the sender's node name
  QpEndpoint endpoint;    // the sender's queue pair for this pair
};

// The holder's answer to PrepareRead.
struct ReadGrant {
  // kNone: staged and readable; else the reason the holder cannot serve it (kAbsent, kEvicted,
  // kCorrupt, kIoError, kDeadline), with detail in `error`.
  MissReason miss = MissReason::kNone;
  Status error;
  uint64_t remote_addr = 0;  // where the staged value starts in the holder's memory
  uint32_t rkey = 0;
  uint64_t length = 0;                  // value bytes
  std::vector<uint64_t> segment_sizes;  // the value's segments, back to back
  // The chunk's lineage when the holder's source gives it (FetchResult::lineage).
  std::optional<ChunkLineage> lineage;
  uint64_t token = 0;  // for Release
  // The holder's queue pair for the pair as it stands (0: none). A requester whose connection
  // goes to another one (the holder restarted) reconnects before READing.
  uint32_t holder_qpn = 0;
  // How long after the holder answered the staged copy is kept without a Release. The
  // requester posts no READ of it after (its send time + ttl − the transport's fence reserve).
  std::chrono::nanoseconds ttl{0};
};

// Requester side: how this node reaches a peer's control handler.
class RdmaControl {
 public:
  virtual ~RdmaControl() = default;
  virtual StatusOr<QpEndpoint> Connect(const Peer& peer, const ConnectRequest& request,
                                       Deadline deadline) = 0;
  virtual StatusOr<RequestConnectReply> RequestConnect(const Peer& peer,
                                                       const std::string& from_node,
                                                       uint32_t failed_qpn, Deadline deadline) = 0;
  virtual StatusOr<ReadGrant> PrepareRead(const Peer& peer, const std::string& from_node,
                                          const FetchSpec& spec, Deadline deadline) = 0;
  virtual void Release(const Peer& peer, uint64_t token) = 0;
};

// Holder side: what the peer service calls when those messages arrive (RdmaTransport
// implements it).
class RdmaControlHandler {
 public:
  virtual ~RdmaControlHandler() = default;
  virtual StatusOr<QpEndpoint> HandleConnect(const ConnectRequest& request) = 0;
  virtual StatusOr<RequestConnectReply> HandleRequestConnect(const std::string& from_node,
                                                             uint32_t failed_qpn,
                                                             Deadline deadline) = 0;
  virtual ReadGrant HandlePrepareRead(const std::string& from_node, const FetchSpec& spec,
                                      Deadline deadline) = 0;
  virtual void HandleRelease(uint64_t token) = 0;
};

}  // namespace tw::mesh::rdma
