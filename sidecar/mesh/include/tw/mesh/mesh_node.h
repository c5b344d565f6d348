// MeshNode: one node's whole part in the mesh, behind a few domain calls. It owns, in order
// of dependence: the peers-file watcher → the membership → the placement; the home's
// Directory; the Announcer (its batches go to each home by the PeerClient's Update, or straight
// into the local Directory when this node is the home); the PeerServer (home and holder
// roles, serving from the caller's ChunkSource); the PeerClient and the Transport (TCP unless
// a factory makes another).
//
// Keys: homes and directories work on directory keys (DirectoryKey(namespace, key)), so every
// call here takes a FetchSpec (namespace + chunk key).
//
//   LocateRemote(chunks, deadline): per chunk a holder other than this node, or a miss reason
//     (kAbsent: no home knows a holder; kPeerUnreachable: its home did not answer in time, or
//     its only holders are cooling off after a failure).
//     ONE batched Locate per home node, all homes at once, under the deadline.
//   Fetch / FetchAny: the chunk's bytes from a holder into the caller's memory, through the
//     transport (FetchAny uses the holder the last LocateRemote found, else locates first).
//   OnStored / OnRemoved: announce / withdraw to the key's home (queued, never blocking).
//   Re-announcing: at start every chunk the store recovered (LocalChunks), after a membership
//     change the chunks whose home moved (rehome.h), and every `refresh_interval` everything
//     (directory entries are soft state with a TTL: a chunk no longer held, whose withdraw
//     was lost or never sent, ages out).
//
// Threading: every public method may be called from any thread. Background threads: the
// watcher's poller, the announcer's ticker, the maintenance thread (re-announces, directory
// expiry) and gRPC's server and client threads. LocalChunks is called on the maintenance
// thread. Lifetime: Start() → Stop() (or destruction); the ChunkSource and LocalChunks must
// stay callable until Stop() returns.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "tw/common/status.h"
#include "tw/mesh/announcer.h"
#include "tw/mesh/directory.h"
#include "tw/mesh/peer_client.h"
#include "tw/mesh/peer_server.h"
#include "tw/mesh/peer_tls.h"
#include "tw/mesh/peers_watcher.h"
#include "tw/mesh/placement.h"
#include "tw/mesh/transport.h"

namespace tw::mesh {

class MeshNode {
 public:
  // Calls `fn(namespace_digest, key)` for every chunk stored locally, until it returns false.
  using LocalChunks = std::function<void(const std::function<bool(const Key&, const Key&)>& fn)>;
  // What a transport factory gets from the node.
  struct TransportEnv {
    std::string self;
    PeerClient* client = nullptr;   // the peer service's client (cool-offs, deadlines)
    ChunkSource* source = nullptr;  // the holder side's chunks
    // A node name → its Peer in the current membership (nullopt: not a member).
    std::function<std::optional<Peer>(const std::string&)> resolve_peer;
  };
  // The data-path transport and, optionally, the peer service's Connect handler that serves
  // it (the RDMA control messages; empty: Connect answers {"tcp"}).
  struct TransportParts {
    std::unique_ptr<Transport> transport;
    PeerServer::ConnectHandler connect;
  };
  // Makes the data-path transport (default: TcpTransport over the node's PeerClient). An
  // error fails Start (e.g. mesh.transport: rdma without a device).
  using TransportFactory = std::function<StatusOr<TransportParts>(const TransportEnv& env)>;

  struct Options {
    // This node's name (ResolveNodeName); must match its entry in the peers file.
    std::string self;
    std::string peers_file;
    std::chrono::milliseconds poll_interval{1000};
    // The peer service's listening address and port (0: a free port, see port()).
    std::string listen_address = "0.0.0.0";
    uint32_t port = 0;
    // Bound on every peer call (mesh.peer_timeout).
    std::chrono::nanoseconds peer_timeout = std::chrono::milliseconds(200);
    // Cool-off of a failed peer (peer_client.h).
    std::chrono::nanoseconds cooloff_initial = std::chrono::milliseconds(250);
    std::chrono::nanoseconds cooloff_max = std::chrono::seconds(10);
    PeerTls tls;
    // The raw wire for Locate and Fetch (peer_server.h; not opened under TLS) and its port
    // (0: a free one).
    bool raw_wire = true;
    uint32_t wire_port = 0;
    // twd's version (Health).
    std::string version;
    // Largest value this node serves to peers.
    uint64_t max_value_size = uint64_t{256} << 20;
    Directory::Options directory;
    // Announcer batching (its `self` is set from `self`).
    Announcer::Options announcer;
    // Re-announce every local chunk this often (keep it under directory.ttl).
    std::chrono::nanoseconds refresh_interval = std::chrono::minutes(4);
    TransportFactory make_transport;  // empty: TCP (tw_mesh_rdma_net: MakeMeshTransportFactory)
  };

  struct Located {
    std::string holder;                     // set when miss == kNone
    MissReason miss = MissReason::kAbsent;  // kNone, kAbsent or kPeerUnreachable
  };

  struct Stats {
    uint64_t membership_version = 0;
    uint64_t peers = 0;
    uint64_t locate_keys = 0;         // keys asked of homes
    uint64_t locate_found = 0;        // of those, with a holder
    uint64_t locate_unreachable = 0;  // of those, whose home did not answer
    uint64_t announce_batches_failed = 0;
    uint64_t reannounced = 0;  // keys re-announced (start, rehoming, refresh)
    PeerClient::Stats client;  // calls that went out, fast failures, failures
    Announcer::Stats announcer;
    Directory::Stats directory;
  };

  // Starts the server (binding the port), the watcher (first poll now: a missing peers file is
  // logged and retried) and the background threads. Errors: bad options, a port in use.
  static StatusOr<std::unique_ptr<MeshNode>> Start(Options options, ChunkSource* source,
                                                   LocalChunks local);
  ~MeshNode();
  MeshNode(const MeshNode&) = delete;
  MeshNode& operator=(const MeshNode&) = delete;

  std::vector<Located> LocateRemote(std::span<const FetchSpec> chunks, Deadline deadline);
  FetchResult Fetch(const std::string& holder, const FetchSpec& spec, std::span<std::byte> dest,
                    Deadline deadline);
  // Fetches from the holder the last LocateRemote of this chunk found (locating it when none
  // is remembered). `holder` (optional) receives the node asked.
  FetchResult FetchAny(const FetchSpec& spec, std::span<std::byte> dest, Deadline deadline,
                       std::string* holder = nullptr);

  void OnStored(const FetchSpec& chunk);
  void OnRemoved(const FetchSpec& chunk);

  // Every peer of the membership (and any other this node talked to): transport, up/down,
  // fetches, failures, bytes in and out, last error.
  std::vector<LinkStats> Links() const;
  Stats GetStats() const;
  const std::string& self() const { return opts_.self; }
  uint32_t port() const { return server_->port(); }
  TransportKind transport_kind() const { return transport_->kind(); }

  // Reads the peers file now (tests; the watcher polls on its own).
  Status PollPeers() { return watcher_.Poll(); }
  // Sends every queued announce now and waits for the maintenance thread to have handled the
  // latest membership (tests).
  void Sync();

  void Stop();

 private:
  explicit MeshNode(Options options, ChunkSource* source, LocalChunks local);
  void OnMembership(const PeersWatcher::Snapshot& snapshot);
  void SendBatch(const std::string& home, UpdateBatch batch);
  void MaintenanceLoop();
  // Announces every local chunk whose top home changed between the two placements (all of
  // them when `old` is empty).
  void Reannounce(const Placement& old_placement, const Placement& new_placement);
  std::shared_ptr<const Membership> membership() const;
  // Records the holder (HolderId) found for each chunk key.
  void RememberHolders(std::span<const std::pair<Key, uint32_t>> hints);
  // A small number naming `node` in hints_.
  uint32_t HolderId(const std::string& node);
  // The chunks' directory keys and their homes' indices in `placement` (of generation
  // `generation`), from dir_keys_ where known.
  void DirectoryKeys(std::span<const FetchSpec> chunks, const Placement& placement,
                     uint64_t generation, std::span<Key> dir_keys, std::span<uint32_t> homes);
  void ForgetHolder(const Key& key);

  const Options opts_;
  ChunkSource* const source_;
  const LocalChunks local_;

  PeersWatcher watcher_;
  Directory directory_;
  std::unique_ptr<PeerClient> client_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<Announcer> announcer_;
  std::unique_ptr<PeerServer> server_;

  mutable std::mutex mu_;
  std::shared_ptr<const Membership> membership_;  // GUARDED_BY(mu_)
  std::shared_ptr<const Placement> placement_;    // GUARDED_BY(mu_)
  uint64_t placement_generation_ = 1;             // GUARDED_BY(mu_): bumped with placement_
  Stats stats_;                                   // GUARDED_BY(mu_): the counters
  // Membership changes waiting for the maintenance thread, and its progress.
  uint64_t wanted_version_ = 0;   // GUARDED_BY(mu_)
  uint64_t handled_version_ = 0;  // GUARDED_BY(mu_)
  bool stop_ = false;             // GUARDED_BY(mu_)
  std::condition_variable cv_;
  std::thread maintenance_;

  // Holder found by the last locate of a chunk key (bounded; cleared when full), as an index
  // into holder_names_ (a few names, bounded).
  std::mutex hints_mu_;
  absl::flat_hash_map<Key, uint32_t> hints_;  // GUARDED_BY(hints_mu_)
  std::vector<std::string> holder_names_;     // GUARDED_BY(hints_mu_)
  // Directory keys of recent lookups (chunk key → namespace digest, directory key): a chain
  // looked up again skips its SHA-256s. Bounded; cleared when full.
  struct CachedDirKey {
    Key namespace_digest;
    Key dir_key;
    uint32_t home = 0;        // index into the placement of `generation`
    uint64_t generation = 0;  // placement_generation_ when `home` was computed
  };
  std::mutex dir_keys_mu_;
  absl::flat_hash_map<Key, CachedDirKey> dir_keys_;  // GUARDED_BY(dir_keys_mu_)

  uint64_t subscription_ = 0;
  bool stopped_ = false;
};

}  // namespace tw::mesh
