// RemoteChunks: what the service core asks of the mesh, in the domain's words. The daemon's
// MeshFront (mesh_front.h) implements it over tw::mesh::MeshNode when mesh.enabled; without
// the mesh the core has none and every local miss stays a miss.
//
// Threading: every method may be called from any number of worker threads at once.
// Lifetime: the implementation outlives the core's use of it (the daemon detaches it before
// stopping the mesh).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "core_types.h"
#include "tw/mesh/transport.h"

namespace tw::twd {

// The mesh as `twctl peers` shows it.
struct PeersReport {
  std::string self;                    // this node's name
  std::string transport;               // "tcp" / "rdma"
  std::vector<mesh::LinkStats> links;  // per peer
  uint64_t membership_version = 0;     // peers-file version in use
  uint64_t announce_batches_failed = 0;
  uint64_t directory_keys = 0;  // directory entries this node keeps as a home
};

class RemoteChunks {
 public:
  virtual ~RemoteChunks() = default;

  // For each chunk: kNone when another node holds it (under that namespace), else why not
  // (kAbsent: no home knows it; kPeerUnreachable: its home did not answer in time). One
  // batched request per home node, all at once, answered by `deadline`.
  virtual std::vector<MissReason> Locate(std::span<const ChunkRef> chunks, Deadline deadline) = 0;

  // The chunk's whole value from a holder into `dest` (Transport::Fetch's contract: nothing
  // is written into `dest` after it returns; a dead or slow holder is kPeerUnreachable by
  // `deadline`).
  virtual mesh::FetchResult Fetch(const ChunkRef& chunk, std::span<std::byte> dest,
                                  Deadline deadline) = 0;

  // A chunk stored (announced to its home) or removed (withdrawn). Queued; never blocks.
  virtual void OnStored(const ChunkRef& chunk) = 0;
  virtual void OnRemoved(const ChunkRef& chunk) = 0;

  virtual PeersReport Peers() const = 0;

  // Periodic housekeeping from the core's Tick() (publishes the per-peer metrics).
  virtual void Tick() {}
};

}  // namespace tw::twd
