// TcpTransport: the mesh's data path over TCP, always available. A fetch is the peer
// service's Fetch stream (peer.proto) on the holder's cached gRPC channel: the holder sends the
// value in 1 MiB messages and each message's bytes are copied into the destination as it
// arrives (no buffer of the whole value on the requesting side). The stream runs under the
// fetch's deadline cut to mesh.peer_timeout; when it passes, gRPC cancels the call and Fetch
// returns kPeerUnreachable, having written nothing after that. Peer failures and cool-offs are
// the PeerClient's (peer_client.h): a dead holder costs one call_timeout, then fails fast.
//
// Threading: as Transport (any number of concurrent fetches). Lifetime: the PeerClient must
// outlive the transport.
#pragma once

#include "tw/mesh/peer_client.h"
#include "tw/mesh/transport.h"

namespace tw::mesh {

class TcpTransport final : public Transport {
 public:
  explicit TcpTransport(PeerClient* client) : client_(client) {}

  TransportKind kind() const override { return TransportKind::kTcp; }

  FetchResult Fetch(const Peer& holder, const FetchSpec& spec, std::span<std::byte> dest,
                    Deadline deadline) override {
    return client_->Fetch(holder, spec, dest, deadline);
  }

  std::vector<LinkStats> Links() const override { return client_->Links(); }

 private:
  PeerClient* const client_;
};

}  // namespace tw::mesh
