// RdmaTransport: the mesh's Transport over RDMA verbs, and the holder side that serves peers'
// READs. One object per node serves both roles over the same queue pairs.
//
// Model (docs/mesh.md "The RDMA transport"):
// - One RC queue pair per peer pair, made on first use and shared by every transfer in both
//   directions (never one per request or per client): at most N−1 per node. The node whose name
//   sorts first builds the pair's connection (control Connect); the other asks it to
//   (RequestConnect), so the two never build it from both ends at once. A rebuild (a peer that
//   restarted or found its side failed) replaces the queue pair; fetches on the old one read
//   again on the new one, within their deadline.
// - Memory is registered once: RegisterMemory (client arenas, the DRAM tier) lets a READ land
//   straight in the destination; a fetch into unregistered memory lands in a registered
//   requester staging ring and is copied out. A holder copies the asked chunk into its
//   registered holder staging ring (PrepareRead) and the requester READs it from there.
// - A value is READ in slices (`slice_bytes`), at most `max_outstanding_per_qp` in flight per
//   queue pair, all signaled; one completion thread polls the one completion queue.
// - Deadlines: posting stops at (deadline − fence reserve); the fetch then waits for its
//   outstanding slices until the deadline. Slices still outstanding then mean a stuck peer:
//   the queue pair is moved to ERR, which flushes them, and Fetch returns only after every one
//   of its slices has completed, so nothing is written into the destination after it returns.
// - Failures: an error completion, a failed connect or an unanswered control call marks the
//   peer down: its queue pair is moved to ERR (destroyed once drained) and fetches to it fail
//   at once with kPeerUnreachable until a cool-off passes (doubling per consecutive failure,
//   `cooloff_initial` up to `cooloff_max`, reset by a successful READ). After the cool-off one
//   caller reconnects; the others wait for that attempt: no reconnect storm. A down or stuck
//   peer holds only its own queue pair's window, so transfers to other peers never wait on it.
//
// Threading: Fetch, RegisterMemory, UnregisterMemory, Links and the Handle* methods may be
// called from any thread at once. Each link's mutex guards its state and its queue pairs'
// outstanding counts; `wr_mu_` guards the work-request table; a transfer's mutex its counts.
// The completion thread takes wr_mu_, then a link's mutex, then a transfer's, one at a time.
// No lock is held across a control call. Lifetime: destroy the transport only when no Fetch or
// Handle* call is in flight; the Verbs, RdmaControl and ChunkSource must outlive it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "tw/mesh/rdma/rdma_control.h"
#include "tw/mesh/rdma/staging_ring.h"
#include "tw/mesh/rdma/verbs.h"
#include "tw/mesh/transport.h"

namespace tw::mesh::rdma {

struct RdmaOptions {
  // This node's name (decides which side of a pair builds the connection). Required.
  std::string node_name;
  // Bytes per RDMA READ work request.
  uint64_t slice_bytes = uint64_t{1} << 20;
  // Most READs in flight on one queue pair (its send queue depth).
  uint32_t max_outstanding_per_qp = 16;
  // Most peers (queue pairs) this node keeps; sizes the completion queue.
  uint32_t max_peers = 1024;
  // Requester staging ring: landing area for fetches into unregistered memory.
  uint64_t staging_bytes = uint64_t{64} << 20;
  // Holder staging ring: where chunks wait to be READ by peers.
  uint64_t holder_staging_bytes = uint64_t{256} << 20;
  // A grant not released within this is freed by the holder.
  std::chrono::nanoseconds grant_ttl = std::chrono::seconds(10);
  // Posting stops this long before the deadline (at most a quarter of the time left), so
  // slices in flight normally complete by the deadline without fencing.
  std::chrono::nanoseconds fence_reserve = std::chrono::milliseconds(10);
  // Cool-off after the first consecutive failure of a peer; doubles per failure up to the max.
  std::chrono::nanoseconds cooloff_initial = std::chrono::milliseconds(100);
  std::chrono::nanoseconds cooloff_max = std::chrono::seconds(30);
  // Clock for cool-offs and grant TTLs (tests pass a FakeClock); deadlines use Clock.
  NowFn now = [] { return Clock::now(); };
  // A node name → its Peer (address, port), for answering RequestConnect. Unset: Peer{node}.
  std::function<std::optional<Peer>(const std::string&)> resolve_peer;

  Status Validate() const;
};

class RdmaTransport final : public Transport, public RdmaControlHandler {
 public:
  // REQUIRES: options valid; `verbs` opened; `control` and `source` outlive the transport.
  static StatusOr<std::unique_ptr<RdmaTransport>> Create(RdmaOptions options,
                                                         std::unique_ptr<Verbs> verbs,
                                                         RdmaControl* control, ChunkSource* source);
  ~RdmaTransport() override;
  RdmaTransport(const RdmaTransport&) = delete;
  RdmaTransport& operator=(const RdmaTransport&) = delete;

  // Transport.
  TransportKind kind() const override { return TransportKind::kRdma; }
  FetchResult Fetch(const Peer& holder, const FetchSpec& spec, std::span<std::byte> dest,
                    Deadline deadline) override;
  // Registers [base, base+length) for local write and remote read. REQUIRES: not overlapping a
  // registered range; no fetch lands in it while UnregisterMemory runs.
  Status RegisterMemory(void* base, size_t length) override;
  void UnregisterMemory(void* base) override;
  std::vector<LinkStats> Links() const override;

  // RdmaControlHandler (called by the peer service).
  StatusOr<QpEndpoint> HandleConnect(const ConnectRequest& request) override;
  StatusOr<RequestConnectReply> HandleRequestConnect(const std::string& from_node,
                                                     uint32_t failed_qpn,
                                                     Deadline deadline) override;
  ReadGrant HandlePrepareRead(const std::string& from_node, const FetchSpec& spec,
                              Deadline deadline) override;
  void HandleRelease(uint64_t token) override;

  // Frees grants past their TTL (PrepareRead also does); returns how many.
  size_t ExpireGrants();

  struct Counters {
    uint64_t connect_attempts = 0;  // connections this node built or asked for
    uint64_t qps_created = 0;
    uint64_t qps_destroyed = 0;
    uint64_t qp_failures = 0;     // queue pairs retired by an error, a fence or a rebuild
    uint64_t fences = 0;          // fetches whose deadline fenced a queue pair
    uint64_t grants_expired = 0;  // holder grants freed by TTL
    uint64_t staged_fetches = 0;  // fetches that landed in the requester staging ring
  };
  Counters counters() const;
  // Queue pairs that exist now (connected, connecting or draining).
  uint64_t live_qps() const;
  const PortInfo& port() const { return verbs_->port(); }

 private:
  struct QpSlot;
  struct Link;
  struct Transfer;
  struct WrRef;
  struct Grant;

  RdmaTransport(RdmaOptions options, std::unique_ptr<Verbs> verbs, RdmaControl* control,
                ChunkSource* source);
  Status Init();
  void CompletionLoop();
  void OnCompletion(const Completion& c);

  StatusOr<std::shared_ptr<Link>> GetLink(const std::string& node);
  // Returns the link's connected queue pair, connecting it if needed; a connected queue pair
  // numbered `rebuild_qpn` (non-zero) is replaced (RequestConnect naming it as failed).
  StatusOr<std::shared_ptr<QpSlot>> EnsureConnected(Link& link, const Peer& peer, Deadline deadline,
                                                    uint32_t rebuild_qpn);
  StatusOr<std::shared_ptr<QpSlot>> NewQpLocked(Link& link);
  void MarkDownLocked(Link& link, const Status& why);
  void RetireQpLocked(Link& link, const std::shared_ptr<QpSlot>& qp);
  void MaybeDestroyLocked(const std::shared_ptr<QpSlot>& qp);

  // Reads grant bytes into local memory: [local, local+grant.length) with `lkey`.
  // `*replaced`: it failed only because the queue pair was replaced by a new connection (not
  // a failure of the peer), so reading again on the new one may succeed.
  Status ReadSlices(const std::shared_ptr<Link>& link, const std::shared_ptr<QpSlot>& qp,
                    const ReadGrant& grant, std::byte* local, uint32_t lkey, Deadline post_deadline,
                    Deadline deadline, bool* replaced);
  // The lkey of a registered range holding [p, p+n), if any.
  std::optional<uint32_t> FindLkey(const std::byte* p, uint64_t n) const;
  void ExpireGrantsLocked(Clock::time_point now);

  const RdmaOptions options_;
  std::unique_ptr<Verbs> verbs_;
  RdmaControl* const control_;
  ChunkSource* const source_;
  PdHandle pd_;
  CqHandle cq_;
  std::unique_ptr<StagingRing> staging_;         // requester landing
  std::unique_ptr<StagingRing> holder_staging_;  // peers READ from here

  mutable std::mutex links_mu_;
  std::map<std::string, std::shared_ptr<Link>> links_;  // GUARDED_BY(links_mu_)

  mutable std::mutex regions_mu_;
  std::map<uintptr_t, std::pair<uint64_t, MemoryRegion>> regions_;  // base → (len, mr)

  std::mutex wr_mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<WrRef>> wrs_;  // GUARDED_BY(wr_mu_)
  std::atomic<uint64_t> next_wr_id_{1};

  std::mutex grants_mu_;
  std::map<uint64_t, std::unique_ptr<Grant>> grants_;  // GUARDED_BY(grants_mu_)
  uint64_t next_token_ = 1;                            // GUARDED_BY(grants_mu_)

  mutable std::mutex counters_mu_;
  Counters counters_;  // GUARDED_BY(counters_mu_)
  std::atomic<uint64_t> live_qps_{0};
  std::atomic<uint32_t> psn_seed_{0x1234};

  std::atomic<bool> stop_{false};
  std::thread completion_thread_;
};

}  // namespace tw::mesh::rdma
