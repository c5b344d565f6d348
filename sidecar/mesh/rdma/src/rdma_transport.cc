// RdmaTransport: setup and teardown, links (connect, failure, cool-off) and the completion
// thread. The fetch path and the holder's grants are in rdma_fetch.cc.
#include "tw/mesh/rdma/rdma_transport.h"

#include <algorithm>
#include <array>
#include <string>

#include "rdma_internal.h"
#include "tw/common/log.h"

namespace tw::mesh::rdma {

namespace {

std::string Ms(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

}  // namespace

Status RdmaOptions::Validate() const {
  if (node_name.empty()) return InvalidArgumentError("rdma: node_name must be set");
  if (slice_bytes == 0 || slice_bytes > (uint64_t{1} << 30)) {
    return InvalidArgumentError("rdma: slice_bytes must be in 1..1GiB");
  }
  if (max_outstanding_per_qp == 0 || max_outstanding_per_qp > 4096) {
    return InvalidArgumentError("rdma: max_outstanding_per_qp must be in 1..4096");
  }
  if (max_peers == 0 || max_peers > 65536) {
    return InvalidArgumentError("rdma: max_peers must be in 1..65536");
  }
  if (staging_bytes == 0) return InvalidArgumentError("rdma: staging_bytes must be > 0");
  if (holder_staging_bytes == 0) {
    return InvalidArgumentError("rdma: holder_staging_bytes must be > 0");
  }
  if (grant_ttl <= fence_reserve) {
    return InvalidArgumentError("rdma: grant_ttl must be longer than fence_reserve");
  }
  if (cooloff_initial.count() <= 0 || cooloff_max < cooloff_initial) {
    return InvalidArgumentError("rdma: need 0 < cooloff_initial <= cooloff_max");
  }
  if (!now) return InvalidArgumentError("rdma: now must be set");
  return OkStatus();
}

RdmaTransport::RdmaTransport(RdmaOptions options, std::unique_ptr<Verbs> verbs,
                             RdmaControl* control, ChunkSource* source)
    : options_(std::move(options)), verbs_(std::move(verbs)), control_(control), source_(source) {}

StatusOr<std::unique_ptr<RdmaTransport>> RdmaTransport::Create(RdmaOptions options,
                                                               std::unique_ptr<Verbs> verbs,
                                                               RdmaControl* control,
                                                               ChunkSource* source) {
  TW_RETURN_IF_ERROR(options.Validate());
  if (verbs == nullptr || control == nullptr || source == nullptr) {
    return InvalidArgumentError("rdma: verbs, control and source are required");
  }
  std::unique_ptr<RdmaTransport> t(
      new RdmaTransport(std::move(options), std::move(verbs), control, source));
  TW_RETURN_IF_ERROR(t->Init());
  return t;
}

Status RdmaTransport::Init() {
  TW_ASSIGN_OR_RETURN(pd_, verbs_->AllocPd());
  // Every queue pair's work completes here: room for every window at once, twice (a retired
  // queue pair still draining its window beside its replacement), so it cannot overflow.
  TW_ASSIGN_OR_RETURN(cq_,
                      verbs_->CreateCq(2 * options_.max_peers * options_.max_outstanding_per_qp));
  TW_ASSIGN_OR_RETURN(staging_, StagingRing::Create(verbs_.get(), pd_, options_.staging_bytes,
                                                    kLocalWrite, "rdma requester staging"));
  TW_ASSIGN_OR_RETURN(holder_staging_,
                      StagingRing::Create(verbs_.get(), pd_, options_.holder_staging_bytes,
                                          kLocalWrite | kRemoteRead, "rdma holder staging"));
  completion_thread_ = std::thread([this] { CompletionLoop(); });
  return OkStatus();
}

RdmaTransport::~RdmaTransport() {
  // Fence every queue pair, let the completion thread drain the flushes, then stop it.
  std::vector<std::shared_ptr<Link>> links;
  {
    std::lock_guard<std::mutex> l(links_mu_);
    for (auto& [node, link] : links_) links.push_back(link);
  }
  for (auto& link : links) {
    std::lock_guard<std::mutex> l(link->mu);
    if (link->qp) RetireQpLocked(*link, link->qp);
    link->qp.reset();
    link->state = LinkState::kIdle;
  }
  if (completion_thread_.joinable()) {
    // Work outstanding at destruction: none when the caller kept the contract; otherwise the
    // flushes arrive within the bound below.
    auto until = Clock::now() + std::chrono::seconds(5);
    while (live_qps_.load() > 0 && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    stop_ = true;
    completion_thread_.join();
  }
  {
    std::lock_guard<std::mutex> l(grants_mu_);
    for (auto& [token, grant] : grants_) holder_staging_->Free(grant->extent);
    grants_.clear();
  }
  staging_.reset();
  holder_staging_.reset();
  {
    std::lock_guard<std::mutex> l(regions_mu_);
    for (auto& [base, region] : regions_) verbs_->DeregMr(region.second.handle).IgnoreError();
    regions_.clear();
  }
  if (cq_.v != 0) verbs_->DestroyCq(cq_).IgnoreError();
  if (pd_.v != 0) verbs_->DeallocPd(pd_).IgnoreError();
}

// ---- links ----

StatusOr<std::shared_ptr<RdmaTransport::Link>> RdmaTransport::GetLink(const std::string& node) {
  if (node == options_.node_name) {
    return InvalidArgumentError("rdma: peer " + node + " is this node");
  }
  std::lock_guard<std::mutex> l(links_mu_);
  auto it = links_.find(node);
  if (it != links_.end()) return it->second;
  if (links_.size() >= options_.max_peers) {
    return ResourceExhaustedError("rdma: more than max_peers (" +
                                  std::to_string(options_.max_peers) + ") peers");
  }
  auto link = std::make_shared<Link>(node);
  links_.emplace(node, link);
  return link;
}

StatusOr<std::shared_ptr<RdmaTransport::QpSlot>> RdmaTransport::NewQpLocked(Link& link) {
  auto qp = std::make_shared<QpSlot>();
  TW_ASSIGN_OR_RETURN(qp->handle,
                      verbs_->CreateQp(pd_, cq_, options_.max_outstanding_per_qp, &qp->qpn));
  live_qps_.fetch_add(1);
  {
    std::lock_guard<std::mutex> l(counters_mu_);
    ++counters_.qps_created;
  }
  Status st = verbs_->ModifyQpToInit(qp->handle);
  if (!st.ok()) {
    RetireQpLocked(link, qp);
    return st.WithPrefix("rdma: queue pair to INIT for " + link.node);
  }
  qp->psn = psn_seed_.fetch_add(0x9e37) & 0xffffff;
  return qp;
}

void RdmaTransport::MaybeDestroyLocked(const std::shared_ptr<QpSlot>& qp) {
  if (!qp->retiring || qp->outstanding > 0 || qp->destroyed) return;
  qp->destroyed = true;
  Status st = verbs_->DestroyQp(qp->handle);
  if (!st.ok())
    TW_LOG(kWarn, "rdma: destroying a queue pair failed", {{"qpn", qp->qpn}, {"error", st}});
  live_qps_.fetch_sub(1);
  std::lock_guard<std::mutex> l(counters_mu_);
  ++counters_.qps_destroyed;
}

void RdmaTransport::RetireQpLocked(Link& link, const std::shared_ptr<QpSlot>& qp) {
  if (qp->retiring) return;
  qp->retiring = true;
  // ERR flushes the outstanding work; the queue pair is destroyed when the last completes.
  Status st = verbs_->ModifyQpToError(qp->handle);
  if (!st.ok())
    TW_LOG(kWarn, "rdma: moving a queue pair to ERR failed", {{"qpn", qp->qpn}, {"error", st}});
  MaybeDestroyLocked(qp);
  link.cv.notify_all();
}

void RdmaTransport::MarkDownLocked(Link& link, const Status& why) {
  if (link.qp) {
    RetireQpLocked(link, link.qp);
    link.qp.reset();
    std::lock_guard<std::mutex> l(counters_mu_);
    ++counters_.qp_failures;
  }
  ++link.consecutive_failures;
  ++link.failures;
  auto cool = options_.cooloff_initial;
  for (uint32_t i = 1; i < link.consecutive_failures && cool < options_.cooloff_max; ++i) cool *= 2;
  cool = std::min(cool, options_.cooloff_max);
  link.down_until = options_.now() + cool;
  link.state = LinkState::kDown;
  link.last_error = why.ToString();
  TW_LOG(kWarn, "rdma: peer down",
         {{"peer", link.node},
          {"cooloff", Ms(cool)},
          {"failures_in_a_row", link.consecutive_failures},
          {"error", link.last_error}});
  link.cv.notify_all();
}

StatusOr<std::shared_ptr<RdmaTransport::QpSlot>> RdmaTransport::EnsureConnected(
    Link& link, const Peer& peer, Deadline deadline, uint32_t rebuild_qpn) {
  std::unique_lock<std::mutex> l(link.mu);
  for (;;) {
    switch (link.state) {
      case LinkState::kUp:
        if (rebuild_qpn == 0 || link.qp->qpn != rebuild_qpn) return link.qp;
        // The peer found this connection failed: rebuild it (a fresh queue pair on both ends).
        RetireQpLocked(link, link.qp);
        link.qp.reset();
        link.state = LinkState::kIdle;
        rebuild_qpn = 0;
        continue;
      case LinkState::kDown:
        if (options_.now() < link.down_until) {
          return UnavailableError("rdma: peer " + link.node + " is down for another " +
                                  Ms(link.down_until - options_.now()) + " (" + link.last_error +
                                  ")");
        }
        link.state = LinkState::kIdle;
        continue;
      case LinkState::kConnecting:
        if (link.cv.wait_until(l, deadline) == std::cv_status::timeout &&
            link.state == LinkState::kConnecting) {
          return UnavailableError("rdma: connecting to " + link.node +
                                  " did not finish before the deadline");
        }
        rebuild_qpn = 0;  // the connection being built is the new one
        continue;
      case LinkState::kIdle:
        break;
    }
    break;
  }
  // This caller builds the connection; others wait on kConnecting.
  link.state = LinkState::kConnecting;
  {
    std::lock_guard<std::mutex> c(counters_mu_);
    ++counters_.connect_attempts;
  }
  Status st;
  if (options_.node_name < link.node) {
    auto qp = NewQpLocked(link);
    if (!qp.ok()) {
      MarkDownLocked(link, qp.status());
      return qp.status();
    }
    const PortInfo& port = verbs_->port();
    ConnectRequest req{options_.node_name,
                       QpEndpoint{(*qp)->qpn, port.lid, port.gid, (*qp)->psn, port.mtu}};
    link.connecting_qpn = (*qp)->qpn;
    l.unlock();
    auto remote = control_->Connect(peer, req, deadline);
    l.lock();
    link.connecting_qpn = 0;
    if (remote.ok()) {
      st = verbs_->ModifyQpToRtr((*qp)->handle, *remote);
      if (st.ok()) st = verbs_->ModifyQpToRts((*qp)->handle, (*qp)->psn);
    } else {
      st = remote.status();
    }
    if (st.ok()) {
      link.qp = *qp;
      link.remote_qpn = remote->qpn;
    } else {
      RetireQpLocked(link, *qp);
    }
  } else {
    // The peer builds this pair's connection; HandleConnect sets link.qp while we wait. We
    // name the peer's queue pair of our last connection as failed, so it rebuilds that one
    // but keeps a connection it has just built towards us.
    uint32_t failed = link.remote_qpn;
    for (int attempt = 0; attempt < 2; ++attempt) {
      l.unlock();
      auto reply = control_->RequestConnect(peer, options_.node_name, failed, deadline);
      l.lock();
      if (!reply.ok()) {
        st = reply.status();
        break;
      }
      if (link.qp && reply->holder_qpn != 0 && link.qp->qpn == reply->requester_qpn) {
        st = OkStatus();
        break;
      }
      // Its connection goes to a queue pair we no longer have (we restarted, or it answered
      // before a rebuild of ours): ask again, naming its queue pair as failed.
      failed = reply->holder_qpn;
      st = UnavailableError("rdma: " + link.node +
                            " answered RequestConnect with a connection to a queue pair we do "
                            "not have");
    }
  }
  if (!st.ok()) {
    MarkDownLocked(link, st.WithPrefix("rdma: connecting to " + link.node));
    return UnavailableError(link.last_error);
  }
  link.state = LinkState::kUp;
  link.cv.notify_all();
  return link.qp;
}

StatusOr<QpEndpoint> RdmaTransport::HandleConnect(const ConnectRequest& request) {
  if (!(request.from_node < options_.node_name)) {
    return FailedPreconditionError("rdma: " + options_.node_name + " builds its connection to " +
                                   request.from_node + "; " + request.from_node +
                                   " must send RequestConnect");
  }
  TW_ASSIGN_OR_RETURN(auto link, GetLink(request.from_node));
  std::lock_guard<std::mutex> l(link->mu);
  TW_ASSIGN_OR_RETURN(auto qp, NewQpLocked(*link));
  Status st = verbs_->ModifyQpToRtr(qp->handle, request.endpoint);
  if (st.ok()) st = verbs_->ModifyQpToRts(qp->handle, qp->psn);
  if (!st.ok()) {
    RetireQpLocked(*link, qp);
    return st.WithPrefix("rdma: accepting " + request.from_node);
  }
  // The peer rebuilt its side: whatever we had is connected to nothing now.
  if (link->qp) RetireQpLocked(*link, link->qp);
  link->qp = qp;
  link->remote_qpn = request.endpoint.qpn;
  // A caller of ours waiting on RequestConnect marks the link up when that returns.
  if (link->state != LinkState::kConnecting) link->state = LinkState::kUp;
  link->cv.notify_all();
  const PortInfo& port = verbs_->port();
  return QpEndpoint{qp->qpn, port.lid, port.gid, qp->psn, port.mtu};
}

StatusOr<RequestConnectReply> RdmaTransport::HandleRequestConnect(const std::string& from_node,
                                                                  uint32_t failed_qpn,
                                                                  Deadline deadline) {
  if (!(options_.node_name < from_node)) {
    return FailedPreconditionError("rdma: " + from_node + " builds its connection to " +
                                   options_.node_name + "; RequestConnect is not for it");
  }
  TW_ASSIGN_OR_RETURN(auto link, GetLink(from_node));
  Peer peer{from_node, "", 0, 1.0};
  if (options_.resolve_peer) {
    auto p = options_.resolve_peer(from_node);
    if (!p) return NotFoundError("rdma: RequestConnect from unknown node " + from_node);
    peer = *p;
  }
  TW_RETURN_IF_ERROR(EnsureConnected(*link, peer, deadline, failed_qpn).status());
  std::lock_guard<std::mutex> l(link->mu);
  if (!link->qp) return UnavailableError("rdma: the connection to " + from_node + " failed");
  return RequestConnectReply{link->qp->qpn, link->remote_qpn};
}

// ---- completions ----

void RdmaTransport::CompletionLoop() {
  std::array<Completion, 64> batch;
  while (!stop_.load()) {
    auto n = verbs_->PollCq(cq_, batch);
    if (!n.ok()) {
      TW_LOG(kError, "rdma: polling the completion queue failed", {{"error", n.status()}});
      verbs_->WaitCq(cq_, std::chrono::milliseconds(20)).IgnoreError();
      continue;
    }
    if (*n == 0) {
      verbs_->WaitCq(cq_, std::chrono::milliseconds(20)).IgnoreError();
      continue;
    }
    for (size_t i = 0; i < *n; ++i) OnCompletion(batch[i]);
  }
}

void RdmaTransport::OnCompletion(const Completion& c) {
  std::shared_ptr<WrRef> ref;
  {
    std::lock_guard<std::mutex> l(wr_mu_);
    auto it = wrs_.find(c.wr_id);
    if (it == wrs_.end()) {
      TW_LOG(kError, "rdma: completion for an unknown work request", {{"wr_id", c.wr_id}});
      return;
    }
    ref = std::move(it->second);
    wrs_.erase(it);
  }
  {
    std::lock_guard<std::mutex> l(ref->link->mu);
    Link& link = *ref->link;
    --ref->qp->outstanding;
    if (c.status == WcStatus::kSuccess) {
      if (link.qp == ref->qp) link.consecutive_failures = 0;
    } else if (link.qp == ref->qp && !ref->qp->retiring) {
      // An error, or a flush on a queue pair we did not fence: it went to ERR on its own (the
      // peer's side failed it).
      MarkDownLocked(link, UnavailableError("rdma: READ from " + link.node +
                                            " failed: " + std::string(ToString(c.status))));
    }
    MaybeDestroyLocked(ref->qp);
    link.cv.notify_all();
  }
  {
    std::lock_guard<std::mutex> l(ref->transfer->mu);
    Transfer& t = *ref->transfer;
    --t.outstanding;
    if (c.status != WcStatus::kSuccess && !t.failed) {
      t.failed = true;
      t.first_error = c.status;
    }
  }
  ref->transfer->cv.notify_all();
}

// ---- statistics ----

std::vector<LinkStats> RdmaTransport::Links() const {
  std::vector<std::shared_ptr<Link>> links;
  {
    std::lock_guard<std::mutex> l(links_mu_);
    for (auto& [node, link] : links_) links.push_back(link);
  }
  std::vector<LinkStats> out;
  for (auto& link : links) {
    std::lock_guard<std::mutex> l(link->mu);
    LinkStats s;
    s.node = link->node;
    s.kind = TransportKind::kRdma;
    s.up = !(link->state == LinkState::kDown && options_.now() < link->down_until);
    s.fetches = link->fetches;
    s.failures = link->failures;
    s.bytes_in = link->bytes_in;
    s.bytes_out = link->bytes_out;
    s.last_error = link->last_error;
    out.push_back(std::move(s));
  }
  return out;
}

RdmaTransport::Counters RdmaTransport::counters() const {
  std::lock_guard<std::mutex> l(counters_mu_);
  return counters_;
}

uint64_t RdmaTransport::live_qps() const { return live_qps_.load(); }

}  // namespace tw::mesh::rdma
