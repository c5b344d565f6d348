// PeerServer: this node's side of the peer service (gRPC, peer.proto), a thin adapter from
// wire messages to the mesh's domain objects:
//   - home role: Update applies a holder's batch to the Directory; Locate answers a batch of
//     directory keys from it;
//   - holder role: Fetch streams a chunk's value from the ChunkSource (the local store under
//     the namespace asked for) in slices of `fetch_slice` bytes, the first message carrying
//     the segment sizes and lineage, or the miss reason;
//   - Connect hands the opaque transport data to a handler (the RDMA transport's exchange);
//     Health names this node.
// The holder reads the whole value into a pooled buffer and writes it out as raw messages
// whose slices reference that buffer (no copy; the buffer returns to the pool when gRPC
// releases the last slice). Locate answers a packed request packed (peer.proto). Requests with
// malformed keys are refused with INVALID_ARGUMENT; Fetch honours the caller's deadline (the source
// stops reading when it passes).
//
// With PeerTls enabled the server requires a client certificate signed by the CA (mutual TLS);
// otherwise it serves plain text, and also opens the raw wire (wire_server.h): Locate and
// Fetch on persistent TCP connections, whose port Health names.
//
// Threading: gRPC's synchronous server runs each call on a thread of its pool, at most
// `max_threads` at once (more calls are refused with RESOURCE_EXHAUSTED, which a client counts
// as a failure of this peer). The directory and source are called from those threads.
// Lifetime: Start() → Stop() (or destruction, which stops); the directory, the source and the
// handlers must outlive the server.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tw/common/status.h"
#include "tw/mesh/directory.h"
#include "tw/mesh/peer_tls.h"
#include "tw/mesh/transport.h"

namespace tw::mesh {

class PeerServer {
 public:
  struct Options {
    // This node's name (Health, Connect).
    std::string node;
    // twd's version (Health).
    std::string version;
    // Address and port to listen on; port 0 picks a free one (tests): see port().
    std::string listen_address = "0.0.0.0";
    uint32_t port = 0;
    PeerTls tls;
    // Bytes of value per Fetch message.
    size_t fetch_slice = size_t{1} << 20;
    // Largest value served (larger ones answer kIoError): the per-stream buffer's cap.
    uint64_t max_value_size = uint64_t{256} << 20;
    // Calls served at once.
    int max_threads = 64;
    // The raw wire (docs/mesh.md "The raw wire"): Locate and Fetch on persistent TCP
    // connections, on `wire_port` (0: a free port), named in Health. Not opened with TLS (the
    // wire is plain text: requesters then stay on gRPC) nor when false.
    bool raw_wire = true;
    uint32_t wire_port = 0;
    // Raw-wire connections open at once (one thread each).
    size_t wire_max_connections = 512;
  };

  // Connection data the caller offered → this node's answer (transports, opaque data).
  struct ConnectOffer {
    std::string from_node;
    std::vector<std::string> transports;
    std::string transport_data;
    Deadline deadline = Deadline::max();  // the caller's
  };
  struct ConnectAnswer {
    std::vector<std::string> transports;
    std::string transport_data;
  };
  using ConnectHandler = std::function<StatusOr<ConnectAnswer>(const ConnectOffer&)>;

  struct Handlers {
    Directory* directory = nullptr;  // required
    ChunkSource* source = nullptr;   // required
    ConnectHandler connect;          // empty: answers {"tcp"} and no data
  };

  // Bytes and fetches this node served, per requesting node.
  struct Served {
    std::string node;
    uint64_t fetches = 0;
    uint64_t bytes = 0;
  };

  // Binds and starts serving. UNAVAILABLE when the address cannot be bound.
  static StatusOr<std::unique_ptr<PeerServer>> Start(Options options, Handlers handlers);
  ~PeerServer();
  PeerServer(const PeerServer&) = delete;
  PeerServer& operator=(const PeerServer&) = delete;

  // The bound port.
  uint32_t port() const;
  // The raw wire's port; 0 when it is not open.
  uint32_t wire_port() const;
  // Stops accepting calls and cancels those in flight after `grace`. Idempotent.
  void Stop(std::chrono::nanoseconds grace = std::chrono::milliseconds(100));

  std::vector<Served> GetServed() const;

 private:
  class Impl;
  explicit PeerServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tw::mesh
