// ServiceCore: what twd does for a client, in the domain's words. It executes lookup, get,
// put, exists, delete, stats and the admin operations (namespace listing, evict, export) for
// one Session against the store, taking and returning the plain structs of core_types.h. No
// generated protobuf type appears here: fronts translate. The Unix-socket codec
// (socket_codec.h, used by the Server) is the clients' front; the mesh's peer service reads the
// same store through the daemon's MeshFront. With a RemoteChunks attached (mesh.enabled), a
// lookup whose local prefix ends asks the mesh for the rest (tier `peer`), and a get of a
// chunk not stored here fetches it from a holder (service_core_remote.cc).
//
// What it enforces beyond a front's structural checks: tenancy (a session reaches only
// namespaces it declared, whose tenant field is its tenant, and only chunks stored under
// them), lease ownership, put key verification (key == ChunkKey(parent, extra, tokens),
// parent in the same namespace), segment bounds against stored values, deadlines. It counts
// every request-level event once, into both STATS and /metrics (service_metrics.h).
//
// Threading: every method is thread-safe; requests of one session may run concurrently.
// Reconfigure() may run at any time (a reload). Lifetime: the store must outlive the core.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core_types.h"
#include "lease_table.h"
#include "namespace_registry.h"
#include "remote_chunks.h"
#include "session.h"
#include "tw/common/config.h"
#include "tw/common/status.h"
#include "tw/store/store.h"

namespace tw::twd {

// twd's version with the protocol versions it speaks ("twd 0.1.0 (protocol 1-3)").
std::string ServerVersion();

class ServiceCore {
 public:
  // Namespaces one session may declare.
  static constexpr uint32_t kMaxNamespacesPerSession = 1024;

  // Namespaces whose fields the core keeps for the admin listing and export.
  static constexpr size_t kMaxKnownNamespaces = 65536;

  // REQUIRES: config passed config::Validate(); store outlives the core. `registry` holds
  // the namespace fields learnt so far (the daemon's is file-backed, so they survive a
  // restart); null: a fresh in-memory one.
  ServiceCore(const config::Config& config, store::Store* store,
              std::unique_ptr<NamespaceRegistry> registry = nullptr);

  // Applies the run-time fields of `config`: tenants, limits, leases, default durability,
  // metrics label cap. (Store-level fields are the daemon's business.)
  void Reconfigure(const config::Config& config);
  // The running config: an immutable snapshot, cheap to take on every request.
  std::shared_ptr<const config::Config> config() const;

  // The tenant a peer maps to: its uid's tenant, else its gid's, else "" when no tenants are
  // configured; PERMISSION_DENIED when tenants are configured and the peer matches none.
  StatusOr<std::string> TenantOf(const PeerCredentials& peer) const;

  // Negotiates the version, maps the arena, declares namespaces. Fills the session; an
  // error means the session cannot go on.
  StatusOr<HelloResult> Hello(Session& session, HelloRequest request);
  // Declares more namespaces on the session: their digests, in order.
  StatusOr<std::vector<Key>> DeclareNamespaces(Session& session,
                                               std::span<const Namespace> namespaces);

  // Whether a lookup's keys must be copied out of the client's arena before the core reads
  // them: when the tenant check or a lease depends on them, the client could change them
  // between two reads (to probe another tenant's chunks, or to lease bytes it is not charged
  // for). Otherwise reading them in place is safe: only the client's own answer depends on them.
  bool LookupNeedsStableKeys(bool take_lease) const;

  // Every method below fails as a whole (nothing done) when an item names a namespace the
  // session did not declare.
  StatusOr<std::vector<LookupItemResult>> Lookup(Session& session, const LookupRequest& request);
  // Leases released (only the session uid's own count).
  uint32_t ReleaseLeases(Session& session, std::span<const uint64_t> leases);
  // REQUIRES: every range and whole-value destination lies inside the session's arena.
  StatusOr<std::vector<GetItemResult>> Get(Session& session, const GetRequest& request);
  // Consumes the request's token and extra bytes.
  // REQUIRES: the ranges lie inside the session's arena and cover each segment exactly once.
  StatusOr<std::vector<PutItemResult>> Put(Session& session, PutRequest& request);
  StatusOr<std::vector<ExistsItemResult>> Exists(Session& session, std::span<const ChunkRef> refs);
  StatusOr<std::vector<bool>> Delete(Session& session, std::span<const ChunkRef> refs);
  // `session` may be null (the admin socket's view: no arena, no tenant).
  ServiceStats Stats(const Session* session);

  // A put is announced when the front reads it and finished when it is answered, so that a
  // put whose parent is still in flight (pipelined) passes the parent check.
  void OnPutQueued(std::span<const ChunkRef> chunks);
  void OnPutDone(std::span<const ChunkRef> chunks);

  // Admin operations (the admin socket; no tenancy).
  std::vector<NamespaceListing> Namespaces();
  uint64_t EvictNamespace(const Key& namespace_digest);
  // Calls `fn` for each chunk the request selects, until it returns false. Returns false
  // when `fn` stopped it.
  bool Export(const ExportRequest& request, const std::function<bool(const ExportedChunk&)>& fn);
  // The Prometheus text of every metric (what /metrics serves).
  std::string MetricsText() const;

  // Periodic housekeeping: expires leases, publishes store gauges.
  void Tick();

  // Open client connections (maintained by the fronts; reported by STATS).
  void ClientConnected();
  void ClientDisconnected();
  uint64_t connected_clients() const { return connected_clients_.load(); }

  // Attaches the mesh (nullptr detaches). REQUIRES: no request in flight (the daemon attaches
  // before serving and detaches after the server stopped).
  void SetRemote(RemoteChunks* remote) { remote_ = remote; }
  // The GPU path's one-line status, reported by Stats. REQUIRES: called before serving.
  void SetGpuStatus(std::string line) { gpu_status_ = std::move(line); }
  // True when a lookup may wait on the network (the mesh is attached): the reactor must hand
  // lookups to a worker.
  bool LookupMayWait() const { return remote_ != nullptr; }
  // The mesh's peers (admin socket); nullopt without the mesh.
  std::optional<PeersReport> Peers() const {
    if (remote_ == nullptr) return std::nullopt;
    return remote_->Peers();
  }

  LeaseTable& leases() { return leases_; }
  store::Store* store() { return store_; }

 private:
  StatusOr<std::pair<Key, DeclaredNamespace>> CheckNamespace(const Session& session,
                                                             const Namespace& ns) const;
  StatusOr<DeclaredNamespace> Declared(Session& session, const Key& digest);
  void CountPut(PutResult result, const Key& ns, uint64_t bytes);
  void CountGetMiss(MissReason reason, const Key& ns);
  // service_core_remote.cc: extends a lookup item's local answer (prefix `local_prefix`, miss
  // `out.miss`) with chunks other nodes hold, as tier kPeer. deeper[c]: the local tiers of
  // chain c past `local_prefix` (chunks stored here that need no asking).
  void ExtendWithPeers(const LookupItem& item, size_t local_prefix,
                       std::span<const std::span<const Tier>> deeper, Deadline deadline,
                       LookupItemResult& out);
  // Serves a get item that missed locally from a holder; false when it stays a miss (`out`
  // then holds the miss). Errors: the item's ranges do not fit the remote value.
  StatusOr<bool> GetFromPeer(Session& s, const GetItem& item, Deadline deadline,
                             GetItemResult& out);
  // Keeps a fetched chunk in local DRAM (mesh.cache_remote_hits) when its lineage proves its
  // key.
  void CacheRemoteHit(const ChunkRef& ref, const mesh::FetchResult& f, const std::byte* value);

  store::Store* const store_;
  RemoteChunks* remote_ = nullptr;  // set before serving (SetRemote)
  std::string gpu_status_;          // set before serving (SetGpuStatus)
  LeaseTable leases_;
  std::atomic<uint64_t> connected_clients_{0};
  // Put results and get outcomes answered: STATS reports these, /metrics counts the same.
  std::array<std::atomic<uint64_t>, kPutResultCount> puts_{};
  std::atomic<uint64_t> get_hits_{0};
  std::array<std::atomic<uint64_t>, kMissReasonCount> get_misses_{};  // by MissReason

  mutable std::mutex mu_;
  std::shared_ptr<const config::Config> config_;  // GUARDED_BY(mu_)

  // Namespace fields seen in HELLO/DECLARE (admin listing and export), at most
  // kMaxKnownNamespaces of them; thread-safe itself.
  std::unique_ptr<NamespaceRegistry> registry_;

  std::mutex pending_mu_;
  // Chunk keys of puts read but not finished → (namespace, count of such puts).
  std::unordered_map<Key, std::pair<Key, int>, KeyHash> pending_puts_;  // GUARDED_BY(pending_mu_)
};

}  // namespace tw::twd
