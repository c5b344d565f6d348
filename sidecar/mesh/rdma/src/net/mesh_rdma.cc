#include "tw/mesh/rdma/mesh_rdma.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "tokenwarehouse/v1/peer.pb.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/mesh/tcp_transport.h"

namespace tw::mesh::rdma {

namespace pb = ::tokenwarehouse::v1;

namespace {

constexpr const char* kRdma = "rdma";
constexpr const char* kTcp = "tcp";

void ToPb(const QpEndpoint& e, pb::RdmaQpEndpoint* out) {
  out->set_qpn(e.qpn);
  out->set_lid(e.lid);
  out->set_gid(reinterpret_cast<const char*>(e.gid.data()), e.gid.size());
  out->set_psn(e.psn);
  out->set_mtu(e.mtu);
}

StatusOr<QpEndpoint> FromPb(const pb::RdmaQpEndpoint& e) {
  QpEndpoint out;
  if (e.gid().size() != out.gid.size()) {
    return InvalidArgumentError("rdma endpoint: gid must be 16 bytes");
  }
  if (e.lid() > 0xffff) return InvalidArgumentError("rdma endpoint: lid out of range");
  out.qpn = e.qpn();
  out.lid = static_cast<uint16_t>(e.lid());
  std::memcpy(out.gid.data(), e.gid().data(), out.gid.size());
  out.psn = e.psn();
  out.mtu = e.mtu();
  return out;
}

StatusOr<Key> KeyOf(const std::string& raw, const char* field) {
  Key k;
  if (raw.size() != k.bytes.size()) {
    return InvalidArgumentError(StrCat("rdma prepare_read: ", field, " must be 32 bytes"));
  }
  std::memcpy(k.bytes.data(), raw.data(), raw.size());
  return k;
}

bool Has(const std::vector<std::string>& v, const char* s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

StatusOr<TransportMode> ParseTransportMode(std::string_view s) {
  if (s == "tcp") return TransportMode::kTcp;
  if (s == "rdma") return TransportMode::kRdma;
  if (s == "auto") return TransportMode::kAuto;
  return InvalidArgumentError(StrCat("mesh.transport: \"", s, "\" is not tcp, rdma or auto"));
}

std::string_view ToString(TransportMode mode) {
  switch (mode) {
    case TransportMode::kTcp:
      return "tcp";
    case TransportMode::kRdma:
      return "rdma";
    case TransportMode::kAuto:
      return "auto";
  }
  return "unknown";
}

// ---- GrpcRdmaControl ----

class GrpcRdmaControl::Impl {
 public:
  Impl(PeerClient* client, Options o) : client_(client), o_(o) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~Impl() {
    {
      std::lock_guard l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  StatusOr<pb::RdmaControlReply> Call(const Peer& peer, const pb::RdmaControlRequest& req,
                                      Deadline deadline) {
    TW_ASSIGN_OR_RETURN(PeerClient::ConnectReply reply,
                        client_->Connect(peer, {kRdma}, req.SerializeAsString(), deadline));
    pb::RdmaControlReply out;
    if (!out.ParseFromString(reply.transport_data)) {
      return UnavailableError("rdma control: " + peer.node + " sent a malformed reply");
    }
    return out;
  }

  void QueueRelease(const Peer& peer, uint64_t token) {
    {
      std::lock_guard l(mu_);
      if (stop_) return;
      if (queue_.size() >= o_.release_queue) {
        stats_.releases_dropped++;
        return;
      }
      queue_.push_back({peer, token});
    }
    cv_.notify_all();
  }

  void Drain() {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return stop_ || (queue_.empty() && !sending_); });
  }

  Stats GetStats() const {
    std::lock_guard l(mu_);
    return stats_;
  }

 private:
  void Loop() {
    std::unique_lock l(mu_);
    while (true) {
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      auto [peer, token] = std::move(queue_.front());
      queue_.pop_front();
      sending_ = true;
      l.unlock();
      pb::RdmaControlRequest req;
      req.mutable_release()->set_token(token);
      auto r = Call(peer, req, Clock::now() + o_.release_timeout);
      l.lock();
      sending_ = false;
      if (r.ok()) {
        stats_.releases_sent++;
      } else {
        stats_.releases_failed++;
      }
      cv_.notify_all();
    }
  }

  PeerClient* const client_;
  const Options o_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Peer, uint64_t>> queue_;  // GUARDED_BY(mu_)
  bool sending_ = false;                         // GUARDED_BY(mu_)
  bool stop_ = false;                            // GUARDED_BY(mu_)
  Stats stats_;                                  // GUARDED_BY(mu_)
  std::thread thread_;
};

GrpcRdmaControl::GrpcRdmaControl(PeerClient* client, Options options)
    : impl_(std::make_unique<Impl>(client, options)) {}
GrpcRdmaControl::~GrpcRdmaControl() = default;

StatusOr<QpEndpoint> GrpcRdmaControl::Connect(const Peer& peer, const ConnectRequest& request,
                                              Deadline deadline) {
  // from_node travels as the Connect rpc's from_node (the PeerClient's self).
  pb::RdmaControlRequest req;
  ToPb(request.endpoint, req.mutable_connect()->mutable_endpoint());
  TW_ASSIGN_OR_RETURN(pb::RdmaControlReply reply, impl_->Call(peer, req, deadline));
  if (!reply.has_connect())
    return UnavailableError("rdma connect: " + peer.node + " answered no endpoint");
  return FromPb(reply.connect());
}

StatusOr<RequestConnectReply> GrpcRdmaControl::RequestConnect(const Peer& peer,
                                                              const std::string& /*from_node*/,
                                                              uint32_t failed_qpn,
                                                              Deadline deadline) {
  pb::RdmaControlRequest req;
  req.mutable_request_connect()->set_failed_qpn(failed_qpn);
  TW_ASSIGN_OR_RETURN(pb::RdmaControlReply reply, impl_->Call(peer, req, deadline));
  if (!reply.has_request_connect()) {
    return UnavailableError("rdma request_connect: " + peer.node + " answered nothing");
  }
  RequestConnectReply out;
  out.holder_qpn = reply.request_connect().holder_qpn();
  out.requester_qpn = reply.request_connect().requester_qpn();
  return out;
}

StatusOr<ReadGrant> GrpcRdmaControl::PrepareRead(const Peer& peer, const std::string& /*from_node*/,
                                                 const FetchSpec& spec, Deadline deadline) {
  pb::RdmaControlRequest req;
  auto* p = req.mutable_prepare_read();
  p->set_namespace_digest(reinterpret_cast<const char*>(spec.namespace_digest.bytes.data()),
                          spec.namespace_digest.bytes.size());
  p->set_key(reinterpret_cast<const char*>(spec.key.bytes.data()), spec.key.bytes.size());
  TW_ASSIGN_OR_RETURN(pb::RdmaControlReply reply, impl_->Call(peer, req, deadline));
  if (!reply.has_prepare_read()) {
    return UnavailableError("rdma prepare_read: " + peer.node + " answered no grant");
  }
  const auto& g = reply.prepare_read();
  if (g.miss_reason() >= kMissReasonCount) {
    return UnavailableError("rdma prepare_read: " + peer.node + " sent an unknown miss reason");
  }
  ReadGrant out;
  out.miss = static_cast<MissReason>(g.miss_reason());
  if (out.miss != MissReason::kNone) {
    out.error = InternalError(g.error().empty() ? std::string(ToString(out.miss)) : g.error());
  }
  out.remote_addr = g.remote_addr();
  out.rkey = g.rkey();
  out.length = g.length();
  out.segment_sizes.assign(g.segment_sizes().begin(), g.segment_sizes().end());
  out.token = g.token();
  out.holder_qpn = g.holder_qpn();
  out.ttl = std::chrono::nanoseconds(g.ttl_ns());
  if (g.parent().size() == 32) {
    ChunkLineage l;
    std::memcpy(l.parent.bytes.data(), g.parent().data(), 32);
    l.extra = g.extra();
    l.tokens.assign(g.tokens().begin(), g.tokens().end());
    out.lineage = std::move(l);
  }
  return out;
}

void GrpcRdmaControl::Release(const Peer& peer, uint64_t token) {
  impl_->QueueRelease(peer, token);
}

GrpcRdmaControl::Stats GrpcRdmaControl::GetStats() const { return impl_->GetStats(); }
void GrpcRdmaControl::DrainReleases() { impl_->Drain(); }

// ---- The holder side ----

PeerServer::ConnectHandler MakeRdmaConnectHandler(RdmaControlHandler* handler) {
  return [handler](const PeerServer::ConnectOffer& offer) -> StatusOr<PeerServer::ConnectAnswer> {
    PeerServer::ConnectAnswer answer;
    answer.transports.push_back(kTcp);
    if (handler != nullptr) answer.transports.push_back(kRdma);
    if (offer.transport_data.empty()) return answer;  // the capability exchange
    if (!Has(offer.transports, kRdma)) {
      return InvalidArgumentError("connect: transport data for an unknown transport");
    }
    if (handler == nullptr) {
      return FailedPreconditionError("connect: this node has no RDMA transport");
    }
    pb::RdmaControlRequest req;
    if (!req.ParseFromString(offer.transport_data)) {
      return InvalidArgumentError("connect: malformed rdma control message");
    }
    if (offer.from_node.empty()) return InvalidArgumentError("connect: from_node is required");
    pb::RdmaControlReply reply;
    switch (req.op_case()) {
      case pb::RdmaControlRequest::kConnect: {
        TW_ASSIGN_OR_RETURN(QpEndpoint ep, FromPb(req.connect().endpoint()));
        ConnectRequest c;
        c.from_node = offer.from_node;
        c.endpoint = ep;
        TW_ASSIGN_OR_RETURN(QpEndpoint mine, handler->HandleConnect(c));
        ToPb(mine, reply.mutable_connect());
        break;
      }
      case pb::RdmaControlRequest::kRequestConnect: {
        TW_ASSIGN_OR_RETURN(
            RequestConnectReply r,
            handler->HandleRequestConnect(offer.from_node, req.request_connect().failed_qpn(),
                                          offer.deadline));
        reply.mutable_request_connect()->set_holder_qpn(r.holder_qpn);
        reply.mutable_request_connect()->set_requester_qpn(r.requester_qpn);
        break;
      }
      case pb::RdmaControlRequest::kPrepareRead: {
        FetchSpec spec;
        TW_ASSIGN_OR_RETURN(spec.namespace_digest,
                            KeyOf(req.prepare_read().namespace_digest(), "namespace_digest"));
        TW_ASSIGN_OR_RETURN(spec.key, KeyOf(req.prepare_read().key(), "key"));
        ReadGrant g = handler->HandlePrepareRead(offer.from_node, spec, offer.deadline);
        auto* out = reply.mutable_prepare_read();
        out->set_miss_reason(static_cast<uint32_t>(g.miss));
        if (!g.error.ok()) out->set_error(std::string(g.error.message()));
        out->set_remote_addr(g.remote_addr);
        out->set_rkey(g.rkey);
        out->set_length(g.length);
        for (uint64_t s : g.segment_sizes) out->add_segment_sizes(s);
        out->set_token(g.token);
        out->set_holder_qpn(g.holder_qpn);
        out->set_ttl_ns(static_cast<uint64_t>(std::max<int64_t>(0, g.ttl.count())));
        if (g.lineage) {
          out->set_parent(reinterpret_cast<const char*>(g.lineage->parent.bytes.data()),
                          g.lineage->parent.bytes.size());
          out->set_extra(g.lineage->extra);
          for (uint32_t t : g.lineage->tokens) out->add_tokens(t);
        }
        break;
      }
      case pb::RdmaControlRequest::kRelease:
        handler->HandleRelease(req.release().token());
        reply.set_released(true);
        break;
      default:
        return InvalidArgumentError("connect: empty rdma control message");
    }
    answer.transport_data = reply.SerializeAsString();
    return answer;
  };
}

// ---- The per-peer transport ----

namespace {

// Routes each fetch to TCP or RDMA by what the peer pair has (mode auto), or always RDMA
// (mode rdma). Owns the control (declared before the transport it serves, so it outlives it).
class MeshTransport final : public Transport {
 public:
  MeshTransport(TransportMode mode, std::chrono::nanoseconds fetch_timeout, PeerClient* client)
      : mode_(mode), fetch_timeout_(fetch_timeout), client_(client), tcp_(client) {}

  Status Init(MeshTransportOptions o, const MeshNode::TransportEnv& env,
              std::unique_ptr<Verbs> verbs) {
    control_ = std::make_unique<GrpcRdmaControl>(client_, o.control);
    o.rdma.node_name = env.self;
    o.rdma.resolve_peer = env.resolve_peer;
    TW_ASSIGN_OR_RETURN(rdma_, RdmaTransport::Create(std::move(o.rdma), std::move(verbs),
                                                     control_.get(), env.source));
    return OkStatus();
  }
  RdmaTransport* rdma() { return rdma_.get(); }

  TransportKind kind() const override { return rdma_ ? TransportKind::kRdma : TransportKind::kTcp; }

  FetchResult Fetch(const Peer& holder, const FetchSpec& spec, std::span<std::byte> dest,
                    Deadline deadline) override {
    if (!rdma_) return tcp_.Fetch(holder, spec, dest, deadline);
    auto use = Choose(holder, deadline);
    if (!use.ok()) {
      FetchResult r;
      r.miss = MissReason::kPeerUnreachable;
      r.error = use.status();
      return r;
    }
    if (*use == TransportKind::kTcp) return tcp_.Fetch(holder, spec, dest, deadline);
    if (fetch_timeout_.count() > 0) deadline = std::min(deadline, Clock::now() + fetch_timeout_);
    FetchResult r = rdma_->Fetch(holder, spec, dest, deadline);
    if (r.miss == MissReason::kPeerUnreachable) Forget(holder.node);
    return r;
  }

  Status RegisterMemory(void* base, size_t length) override {
    return rdma_ ? rdma_->RegisterMemory(base, length) : OkStatus();
  }
  void UnregisterMemory(void* base) override {
    if (rdma_) rdma_->UnregisterMemory(base);
  }

  std::vector<LinkStats> Links() const override {
    std::map<std::string, LinkStats> by_node;
    for (LinkStats& l : tcp_.Links()) by_node[l.node] = std::move(l);
    std::map<std::string, TransportKind> chosen;
    {
      std::lock_guard l(mu_);
      chosen = chosen_;
    }
    if (rdma_) {
      for (LinkStats& l : rdma_->Links()) {
        auto it = chosen.find(l.node);
        if (it != chosen.end() && it->second == TransportKind::kTcp) continue;
        by_node[l.node] = std::move(l);
      }
    }
    std::vector<LinkStats> out;
    for (auto& [node, l] : by_node) {
      auto it = chosen.find(node);
      l.kind = it != chosen.end() ? it->second : kind();
      out.push_back(std::move(l));
    }
    return out;
  }

 private:
  // The transport for this pair: decided at first contact by the capability exchange.
  StatusOr<TransportKind> Choose(const Peer& holder, Deadline deadline) {
    {
      std::lock_guard l(mu_);
      auto it = chosen_.find(holder.node);
      if (it != chosen_.end() && !stale_.contains(holder.node)) return it->second;
    }
    TW_ASSIGN_OR_RETURN(PeerClient::ConnectReply reply,
                        client_->Connect(holder, {kTcp, kRdma}, "", deadline));
    const bool both = Has(reply.transports, kRdma);
    if (!both && mode_ == TransportMode::kRdma) {
      return UnavailableError("mesh.transport is rdma but " + holder.node + " has no RDMA");
    }
    const TransportKind k = both ? TransportKind::kRdma : TransportKind::kTcp;
    std::lock_guard l(mu_);
    auto [it, fresh] = chosen_.insert_or_assign(holder.node, k);
    (void)it;
    if (fresh || stale_.contains(holder.node)) {
      TW_LOG(kInfo, "mesh: transport chosen for peer",
             {{"peer", holder.node}, {"transport", std::string(mesh::ToString(k))}});
    }
    stale_.erase(holder.node);
    return k;
  }
  void Forget(const std::string& node) {
    std::lock_guard l(mu_);
    if (chosen_.contains(node)) stale_.insert(node);
  }

  const TransportMode mode_;
  const std::chrono::nanoseconds fetch_timeout_;
  PeerClient* const client_;
  TcpTransport tcp_;
  std::unique_ptr<GrpcRdmaControl> control_;
  std::unique_ptr<RdmaTransport> rdma_;
  mutable std::mutex mu_;
  std::map<std::string, TransportKind> chosen_;  // GUARDED_BY(mu_)
  std::set<std::string> stale_;                  // GUARDED_BY(mu_): ask again at next fetch
};

}  // namespace

MeshNode::TransportFactory MakeMeshTransportFactory(MeshTransportOptions options) {
  return [options = std::move(options)](
             const MeshNode::TransportEnv& env) -> StatusOr<MeshNode::TransportParts> {
    MeshNode::TransportParts parts;
    auto t = std::make_unique<MeshTransport>(options.mode, options.fetch_timeout, env.client);
    if (options.mode != TransportMode::kTcp) {
      StatusOr<std::unique_ptr<Verbs>> verbs =
          options.open_verbs
              ? options.open_verbs()
              : StatusOr<std::unique_ptr<Verbs>>(FailedPreconditionError("no RDMA device opener"));
      Status st = verbs.ok() ? t->Init(options, env, std::move(*verbs)) : verbs.status();
      if (!st.ok() && options.mode == TransportMode::kRdma) {
        return FailedPreconditionError("mesh.transport is rdma but RDMA is not usable: " +
                                       st.ToString());
      }
      if (!st.ok()) {
        TW_LOG(kWarn, "mesh: no usable RDMA device; mesh.transport auto uses TCP with every peer",
               {{"error", st.ToString()}});
        t = std::make_unique<MeshTransport>(options.mode, options.fetch_timeout, env.client);
      }
    }
    parts.connect = MakeRdmaConnectHandler(t->rdma());
    parts.transport = std::move(t);
    return parts;
  };
}

}  // namespace tw::mesh::rdma
