// MeshFront: twd's side of the mesh when `mesh.enabled`. It starts a tw::mesh::MeshNode from
// the config (node name, peers file, listen address and port, peer_timeout, mutual TLS, and
// mesh.transport: tcp, or rdma/auto with the device mesh.rdma_device opened through
// tw_mesh_rdma_net's transport factory) over the local store, and implements the service
// core's RemoteChunks with it:
//   - the holder role serves peers from the store (StoreChunkSource: the whole value of a
//     chunk, only under the namespace it was stored in, into a per-stream buffer);
//   - lookups and gets that run out of local chunks ask the mesh (RemoteChunks);
//   - puts and deletes are announced and withdrawn; what the store recovered is announced at
//     start (Store::Export).
// Links() feeds `twctl peers` and the tw_mesh_* metrics.
//
// Threading: as RemoteChunks (any thread). Lifetime: Start() → Stop() → destroy; the store
// outlives it. The daemon detaches it from the core (after the client server stopped) before
// Stop().
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "remote_chunks.h"
#include "tw/common/config.h"
#include "tw/common/status.h"
#include "tw/mesh/rdma/verbs.h"
#include "tw/mesh/transport.h"
#include "tw/store/store.h"

namespace tw::mesh {
class MeshNode;
}

namespace tw::twd {

class StoreChunkSource final : public mesh::ChunkSource {
 public:
  explicit StoreChunkSource(store::Store* store) : store_(store) {}
  std::optional<uint64_t> ValueSize(const mesh::FetchSpec& spec) override;
  mesh::FetchResult Read(const mesh::FetchSpec& spec, std::span<std::byte> dest,
                         mesh::Deadline deadline) override;

 private:
  store::Store* const store_;
};

class MeshFront final : public RemoteChunks {
 public:
  // Opens the RDMA device (StoreHooks::open_rdma); empty: OpenIbVerbs(mesh.rdma_device).
  using RdmaDeviceOpener =
      std::function<StatusOr<std::unique_ptr<mesh::rdma::Verbs>>(const config::Config&)>;
  // REQUIRES: config passed config::Validate() and mesh.enabled.
  static StatusOr<std::unique_ptr<MeshFront>> Start(const config::Config& config,
                                                    store::Store* store, const std::string& version,
                                                    RdmaDeviceOpener open_rdma = nullptr);
  ~MeshFront() override;

  std::vector<MissReason> Locate(std::span<const ChunkRef> chunks, Deadline deadline) override;
  mesh::FetchResult Fetch(const ChunkRef& chunk, std::span<std::byte> dest,
                          Deadline deadline) override;
  void OnStored(const ChunkRef& chunk) override;
  void OnRemoved(const ChunkRef& chunk) override;

  PeersReport Peers() const override;
  // Publishes the per-peer counters as tokenwarehouse_mesh_* metrics.
  void Tick() override;
  void PublishMetrics() const;
  void Stop();

 private:
  MeshFront(store::Store* store, std::chrono::nanoseconds peer_timeout);

  store::Store* const store_;
  StoreChunkSource source_;
  const std::chrono::nanoseconds peer_timeout_;
  std::unique_ptr<mesh::MeshNode> node_;
  mutable std::mutex metrics_mu_;
  // The links as last published to /metrics (counters grow by the difference).
  mutable std::map<std::string, mesh::LinkStats> published_;  // GUARDED_BY(metrics_mu_)
};

}  // namespace tw::twd
