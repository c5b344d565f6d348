// The RDMA transport on the mesh's peer service (docs/mesh.md "The RDMA transport"):
//
// - GrpcRdmaControl: RdmaControl over the peer service. The four control messages travel as
//   typed messages (peer.proto RdmaControlRequest / RdmaControlReply) inside the Connect rpc,
//   through the PeerClient: its cached channel per peer, its deadlines (the caller's, cut to
//   mesh.peer_timeout) and its cool-off of failed peers. Release is fire and forget: queued
//   (at most `release_queue` waiting; more are dropped, the holder's grant TTL frees them) and
//   sent by one background thread, so a fetch's caller never waits on it.
// - MakeRdmaConnectHandler: the holder side, the PeerServer's Connect handler: an empty
//   Connect is the capability exchange (it answers "tcp", and "rdma" when this node has RDMA);
//   one carrying an RdmaControlRequest is dispatched to the RdmaControlHandler.
// - MakeMeshTransportFactory: MeshNode's transport for `mesh.transport: tcp|rdma|auto`. With
//   rdma or auto it opens the Verbs device (open_verbs); none → auto uses TCP only (logged
//   once), rdma fails Start. Per peer, the first fetch exchanges capabilities (Connect, under
//   the fetch's deadline) and the pair uses RDMA when both have it (rdma mode: a peer without
//   it is a miss, peer_unreachable, naming why), TCP otherwise. An RDMA fetch that finds the
//   peer unreachable forgets its capabilities, so a peer restarted without RDMA is asked again.
//   Links() shows each peer's chosen transport.
//
// Threading: everything may be called from any thread. Lifetime: the PeerClient outlives the
// transport and the control; the handler outlives the PeerServer using it.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "tw/common/status.h"
#include "tw/mesh/mesh_node.h"
#include "tw/mesh/peer_client.h"
#include "tw/mesh/peer_server.h"
#include "tw/mesh/rdma/rdma_control.h"
#include "tw/mesh/rdma/rdma_transport.h"
#include "tw/mesh/rdma/verbs.h"

namespace tw::mesh::rdma {

enum class TransportMode : uint8_t { kTcp = 0, kRdma = 1, kAuto = 2 };
// "tcp", "rdma", "auto"; anything else is INVALID_ARGUMENT naming mesh.transport.
StatusOr<TransportMode> ParseTransportMode(std::string_view s);
std::string_view ToString(TransportMode mode);

class GrpcRdmaControl final : public RdmaControl {
 public:
  struct Options {
    size_t release_queue = 4096;  // Releases waiting to be sent; more are dropped
    std::chrono::nanoseconds release_timeout = std::chrono::milliseconds(200);
  };
  GrpcRdmaControl(PeerClient* client, Options options);
  ~GrpcRdmaControl() override;  // sends nothing more; drops what is queued
  GrpcRdmaControl(const GrpcRdmaControl&) = delete;
  GrpcRdmaControl& operator=(const GrpcRdmaControl&) = delete;

  StatusOr<QpEndpoint> Connect(const Peer& peer, const ConnectRequest& request,
                               Deadline deadline) override;
  StatusOr<RequestConnectReply> RequestConnect(const Peer& peer, const std::string& from_node,
                                               uint32_t failed_qpn, Deadline deadline) override;
  StatusOr<ReadGrant> PrepareRead(const Peer& peer, const std::string& from_node,
                                  const FetchSpec& spec, Deadline deadline) override;
  void Release(const Peer& peer, uint64_t token) override;

  struct Stats {
    uint64_t releases_sent = 0;
    uint64_t releases_failed = 0;
    uint64_t releases_dropped = 0;  // the queue was full
  };
  Stats GetStats() const;
  // Waits until every queued Release has been sent or has failed (tests).
  void DrainReleases();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// The Connect handler serving `handler` (nullptr: this node speaks TCP only).
PeerServer::ConnectHandler MakeRdmaConnectHandler(RdmaControlHandler* handler);

struct MeshTransportOptions {
  TransportMode mode = TransportMode::kAuto;
  // The RDMA transport's tuning; node_name and resolve_peer are set from the node.
  RdmaOptions rdma;
  // Opens this node's device port (twd: OpenIbVerbs(mesh.rdma_device); tests: a SoftFabric).
  std::function<StatusOr<std::unique_ptr<Verbs>>()> open_verbs;
  GrpcRdmaControl::Options control;
  // An RDMA fetch gives up after this, whatever the caller's deadline (mesh.peer_timeout, as
  // the TCP stream; 0: the caller's deadline only).
  std::chrono::nanoseconds fetch_timeout{0};
};

MeshNode::TransportFactory MakeMeshTransportFactory(MeshTransportOptions options);

}  // namespace tw::mesh::rdma
