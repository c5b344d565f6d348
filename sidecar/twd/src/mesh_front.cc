#include "mesh_front.h"

#include <malloc.h>

#include <map>
#include <mutex>

#include "tw/common/log.h"
#include "tw/common/metrics.h"
#include "tw/common/strings.h"
#include "tw/mesh/mesh_node.h"
#include "tw/mesh/node_name.h"
#include "tw/mesh/peer_tls.h"
#include "tw/mesh/rdma/ib_verbs.h"
#include "tw/mesh/rdma/mesh_rdma.h"

namespace tw::twd {

std::optional<uint64_t> StoreChunkSource::ValueSize(const mesh::FetchSpec& spec) {
  auto meta = store_->Stat(spec.key);
  if (!meta || meta->info.namespace_digest != spec.namespace_digest) return std::nullopt;
  return meta->value_size;
}

mesh::FetchResult StoreChunkSource::Read(const mesh::FetchSpec& spec, std::span<std::byte> dest,
                                         mesh::Deadline deadline) {
  mesh::FetchResult r;
  auto meta = store_->Stat(spec.key);
  if (!meta || meta->info.namespace_digest != spec.namespace_digest) {
    r.miss = MissReason::kAbsent;
    return r;
  }
  store::GetOptions o;
  o.deadline = deadline;
  o.namespace_digest = spec.namespace_digest;
  o.whole_chunk = true;
  o.dest = dest.data();
  o.capacity = dest.size();
  store::GetResult g = store_->Get(spec.key, {}, o);
  r.miss = g.miss;
  r.error = std::move(g.error);
  r.segment_sizes = std::move(g.segment_sizes);
  if (g.miss != MissReason::kNone) return r;
  r.bytes = g.bytes;
  r.lineage = mesh::ChunkLineage{meta->info.parent, std::move(meta->info.extra),
                                 std::move(meta->info.tokens)};
  return r;
}

MeshFront::MeshFront(store::Store* store, std::chrono::nanoseconds peer_timeout)
    : store_(store), source_(store), peer_timeout_(peer_timeout) {}

void MeshFront::Tick() {
  // Evictions become withdraws (queued in the announcer, batched per home).
  for (const store::EvictedChunk& e : store_->TakeEvicted(size_t{1} << 16)) {
    node_->OnRemoved({e.namespace_digest, e.key});
  }
  PublishMetrics();
}

MeshFront::~MeshFront() { Stop(); }

StatusOr<std::unique_ptr<MeshFront>> MeshFront::Start(const config::Config& config,
                                                      store::Store* store,
                                                      const std::string& version,
                                                      RdmaDeviceOpener open_rdma) {
  const config::MeshConfig& m = config.mesh;
  mesh::MeshNode::Options o;
  TW_ASSIGN_OR_RETURN(o.self, mesh::ResolveNodeName(m.node_name));
  o.peers_file = m.peers_file;
  o.listen_address = m.listen_address;
  o.port = m.port;
  // The raw wire (Locate and Fetch on persistent connections) listens next to the peer
  // service; without TLS only (docs/mesh.md "The raw wire").
  o.wire_port = m.port == 0 || m.port >= 65535 ? 0 : m.port + 1;
  o.peer_timeout = m.peer_timeout;
  TW_ASSIGN_OR_RETURN(o.tls, mesh::LoadPeerTls(m.tls));
  o.version = version;
  o.max_value_size = config.limits.max_value_size;
  // The periodic re-announce reads each NVMe-only chunk's header (Store::Export): a long TTL
  // keeps that to a trickle; a home forgets a holder's entry 30 minutes after its last word.
  o.directory.ttl = std::chrono::minutes(30);
  o.refresh_interval = std::chrono::minutes(12);
  mesh::rdma::MeshTransportOptions t;
  t.mode = m.transport == config::Transport::kRdma   ? mesh::rdma::TransportMode::kRdma
           : m.transport == config::Transport::kAuto ? mesh::rdma::TransportMode::kAuto
                                                     : mesh::rdma::TransportMode::kTcp;
  t.control.release_timeout = m.peer_timeout;
  t.fetch_timeout = m.peer_timeout;
  if (open_rdma) {
    t.open_verbs = [open_rdma, config] { return open_rdma(config); };
  } else {
    t.open_verbs = [device = m.rdma_device] { return mesh::rdma::OpenIbVerbs(device); };
  }
  o.make_transport = mesh::rdma::MakeMeshTransportFactory(std::move(t));
  // Fetched bytes arrive in gRPC's receive slices (64 KiB each, peer_client.cc): keep the
  // memory malloc frees (up to 64 MiB at the top of a heap) instead of giving it back, so
  // each received slice reuses pages already mapped rather than faulting in and zeroing fresh
  // ones (a fixed trim threshold also fixes malloc's mmap threshold at 128 KiB).
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  std::unique_ptr<MeshFront> f(new MeshFront(store, m.peer_timeout));
  auto local = [store](const std::function<bool(const Key&, const Key&)>& fn) {
    store->Export([&](const store::ChunkMeta& meta) {
      return fn(meta.info.namespace_digest, meta.info.key);
    });
  };
  auto node = mesh::MeshNode::Start(std::move(o), &f->source_, local);
  if (!node.ok()) return node.status().WithPrefix("mesh");
  f->node_ = std::move(*node);
  return f;
}

void MeshFront::Stop() {
  if (node_) node_->Stop();
}

std::vector<MissReason> MeshFront::Locate(std::span<const ChunkRef> chunks, Deadline deadline) {
  std::vector<mesh::FetchSpec> specs;
  specs.reserve(chunks.size());
  for (const ChunkRef& c : chunks) specs.push_back({c.namespace_digest, c.key});
  const auto located = node_->LocateRemote(specs, deadline);
  std::vector<MissReason> out(located.size());
  for (size_t i = 0; i < located.size(); ++i) out[i] = located[i].miss;
  return out;
}

mesh::FetchResult MeshFront::Fetch(const ChunkRef& chunk, std::span<std::byte> dest,
                                   Deadline deadline) {
  return node_->FetchAny({chunk.namespace_digest, chunk.key}, dest, deadline);
}

void MeshFront::OnStored(const ChunkRef& chunk) {
  node_->OnStored({chunk.namespace_digest, chunk.key});
}

void MeshFront::OnRemoved(const ChunkRef& chunk) {
  node_->OnRemoved({chunk.namespace_digest, chunk.key});
}

PeersReport MeshFront::Peers() const {
  PeersReport r;
  r.self = node_->self();
  r.transport = std::string(mesh::ToString(node_->transport_kind()));
  r.links = node_->Links();
  const auto st = node_->GetStats();
  r.membership_version = st.membership_version;
  r.announce_batches_failed = st.announce_batches_failed;
  r.directory_keys = st.directory.keys;
  return r;
}

void MeshFront::PublishMetrics() const {
  // Cumulative per-peer counters: each tick adds what moved since the last one.
  auto& fetches =
      metrics::CounterFamily("tokenwarehouse_mesh_fetches_total", "Chunks fetched from each peer");
  auto& failures =
      metrics::CounterFamily("tokenwarehouse_mesh_failures_total", "Failed calls to each peer");
  auto& bytes_in = metrics::CounterFamily("tokenwarehouse_mesh_bytes_in_total",
                                          "Value bytes received from each peer");
  auto& bytes_out = metrics::CounterFamily("tokenwarehouse_mesh_bytes_out_total",
                                           "Value bytes served to each peer");
  auto& up = metrics::GaugeFamily("tokenwarehouse_mesh_peer_up",
                                  "1 when the peer answers, 0 while it cools off after a failure");
  std::lock_guard lock(metrics_mu_);
  for (const mesh::LinkStats& l : node_->Links()) {
    const std::map<std::string, std::string> labels = {
        {"peer", l.node}, {"transport", std::string(mesh::ToString(l.kind))}};
    mesh::LinkStats& was = published_[l.node];
    auto add = [&](prometheus::Family<prometheus::Counter>& f, uint64_t now, uint64_t before) {
      auto& c = f.Add(labels);
      if (now > before) c.Increment(static_cast<double>(now - before));
    };
    add(fetches, l.fetches, was.fetches);
    add(failures, l.failures, was.failures);
    add(bytes_in, l.bytes_in, was.bytes_in);
    add(bytes_out, l.bytes_out, was.bytes_out);
    up.Add(labels).Set(l.up ? 1 : 0);
    was = l;
  }
}

}  // namespace tw::twd
