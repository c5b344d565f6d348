// Service: the domain side of twd's client protocol. It executes parsed, structurally
// validated requests (tw::protocol::ParseRequest) for one Session against the store and
// returns reply frames. It knows nothing of sockets: the Server (server.h) reads frames,
// hands them here on a worker thread and writes what comes back.
//
// What it enforces beyond the codec: tenancy (a session reaches only namespaces it declared,
// whose tenant field is its tenant, and only chunks stored under them), lease ownership,
// put key verification (key == ChunkKey(parent, extra, tokens), parent in the same
// namespace), segment bounds against stored values, deadlines.
//
// Threading: every method is thread-safe; requests of one session may run concurrently.
// Reconfigure() may run at any time (a reload). Lifetime: the store must outlive the Service.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tw/common/config.h"
#include "tw/common/status.h"
#include "tw/protocol/fd_passing.h"
#include "tw/protocol/messages.h"
#include "tw/store/store.h"
#include "tw/twd/lease_table.h"
#include "tw/twd/session.h"

namespace tw::twd {

namespace pb = ::tokenwarehouse::v1;

// twd's version string (HelloResponse.server_version, `twd --version`).
std::string_view ServerVersion();

class Service {
 public:
  using Clock = std::chrono::steady_clock;

  // REQUIRES: config passed config::Validate(); store outlives the Service.
  Service(const config::Config& config, store::Store* store);

  // Applies the run-time fields of `config`: tenants, limits, leases, default durability,
  // metrics label cap. (Store-level fields are the daemon's business.)
  void Reconfigure(const config::Config& config);
  // The running config: an immutable snapshot, cheap to take on every request.
  std::shared_ptr<const config::Config> config() const;

  // The tenant a peer maps to: its uid's tenant, else its gid's, else "" when no tenants are
  // configured; PERMISSION_DENIED when tenants are configured and the peer matches none.
  StatusOr<std::string> TenantOf(const PeerCredentials& peer) const;

  // Structural limits for a session's requests.
  protocol::MessageLimits Limits(const Session& session) const;

  // HELLO: negotiates the version, declares namespaces, maps the arena (`fds` holds what came
  // with the frame: none, or exactly one memfd). Fills the session; errors are fatal.
  StatusOr<pb::HelloResponse> Hello(Session& session, const pb::HelloRequest& request,
                                    std::vector<protocol::UniqueFd> fds);

  // Sends one frame of a streamed reply before the request is done; false when the
  // connection is gone (the request then stops early).
  using Emit = std::function<bool(std::string frame)>;

  // Runs one request (not HELLO) and returns the reply frames. A streamed reply (export)
  // hands all frames but the last to `emit` as they fill, when given; without it they are
  // all returned. A request that fails as a whole becomes an error frame.
  std::vector<std::string> Handle(Session& session, const protocol::FrameHeader& header,
                                  const google::protobuf::MessageLite& request,
                                  Clock::time_point received, const Emit& emit = nullptr);

  // Most keys (over all chains) of a lookup answered on the reactor.
  static constexpr size_t kInlineLookupKeys = 4096;

  // True for requests that touch only memory and are small — PING, and LOOKUP (with or
  // without leases and tenants) of at most kInlineLookupKeys keys — so the Server may run
  // them on its reactor thread instead of handing them to a worker.
  bool CanRunInline(protocol::Opcode op, const google::protobuf::MessageLite& request) const;

  // Called on the reactor thread when a PUT is read, before it is queued, and by the worker
  // when it is done: lets a chunk's put see its parent's put in flight.
  void OnPutQueued(const pb::PutRequest& request);
  void OnPutDone(const pb::PutRequest& request);

  // Periodic housekeeping: expires leases, publishes store gauges.
  void Tick();

  LeaseTable& leases() { return leases_; }
  store::Store* store() { return store_; }

 private:
  StatusOr<DeclaredNamespace> CheckNamespace(Session& session, const pb::Namespace& ns,
                                             Key* digest);
  Status Declare(Session& session, const google::protobuf::RepeatedPtrField<pb::Namespace>& ns,
                 google::protobuf::RepeatedPtrField<std::string>* digests);
  StatusOr<DeclaredNamespace> Declared(Session& session, const std::string& digest);

  StatusOr<pb::LookupResponse> Lookup(Session& s, const pb::LookupRequest& r,
                                      store::Deadline deadline);
  StatusOr<pb::GetResponse> GetChunks(Session& s, const pb::GetRequest& r,
                                      store::Deadline deadline);
  StatusOr<pb::PutResponse> Put(Session& s, const pb::PutRequest& r, store::Deadline deadline);
  StatusOr<pb::ExistsResponse> Exists(Session& s, const pb::ExistsRequest& r);
  StatusOr<pb::DeleteResponse> Delete(Session& s, const pb::DeleteRequest& r);
  pb::StatsResponse Stats(Session* s);
  pb::NamespacesResponse Namespaces();
  std::vector<std::string> Export(uint64_t request_id, const pb::ExportRequest& r,
                                  const Emit& emit);

  store::Store* const store_;
  LeaseTable leases_;

  mutable std::mutex mu_;
  std::shared_ptr<const config::Config> config_;  // GUARDED_BY(mu_)

  std::mutex known_mu_;
  static constexpr size_t kMaxKnownNamespaces = 65536;
  // Namespace fields seen in HELLO/DECLARE since start (admin listing and export), at most
  // kMaxKnownNamespaces of them.
  std::map<Key, Namespace> known_namespaces_;  // GUARDED_BY(known_mu_)

  std::mutex pending_mu_;
  // Chunk keys of puts read but not finished → (namespace, count of such puts).
  std::unordered_map<Key, std::pair<Key, int>, KeyHash> pending_puts_;  // GUARDED_BY(pending_mu_)

 public:
  // Open client connections (maintained by the Server; reported by STATS).
  std::atomic<uint64_t> connected_clients{0};
};

}  // namespace tw::twd
