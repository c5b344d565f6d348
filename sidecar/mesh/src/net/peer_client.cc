#include "tw/mesh/peer_client.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "fetch_wire.h"
#include "grpc_util.h"
#include "tokenwarehouse/v1/peer.grpc.pb.h"
#include "tw/common/strings.h"
#include "wire_client.h"

namespace tw::mesh {

namespace pb = ::tokenwarehouse::v1;
using net::FromGrpc;
using net::ToSystem;

Status PeerClient::Options::Validate() const {
  if (self.empty()) return InvalidArgumentError("peer client: self: must not be empty");
  if (call_timeout <= std::chrono::nanoseconds::zero()) {
    return InvalidArgumentError("peer client: call_timeout: must be > 0");
  }
  if (cooloff_initial <= std::chrono::nanoseconds::zero()) {
    return InvalidArgumentError("peer client: cooloff_initial: must be > 0");
  }
  if (cooloff_max < cooloff_initial) {
    return InvalidArgumentError("peer client: cooloff_max: must be >= cooloff_initial");
  }
  return OkStatus();
}

namespace {

struct PeerState {
  std::string target;  // address:port of the cached channel
  std::shared_ptr<grpc::Channel> channel;
  std::shared_ptr<pb::Peer::Stub> stub;
  uint32_t consecutive_failures = 0;
  Clock::time_point cool_until{};
  bool probing = false;  // the one call allowed out after a cool-off is in flight
  // The peer's raw-wire port as its Health named it: -1 not asked yet, 0 none (gRPC only).
  int64_t wire_port = -1;
  LinkStats link;
};

// What a call needs after it was admitted: the stub, and how to report back.
struct Ticket {
  std::shared_ptr<grpc::Channel> channel;  // Fetch's raw stream
  std::shared_ptr<pb::Peer::Stub> stub;
  bool probe = false;
  bool full_timeout = false;  // the call runs under the whole call_timeout
  Deadline deadline;
  int64_t wire_port = 0;  // -1: ask the peer's Health; 0: gRPC
};

}  // namespace

class PeerClient::Impl {
 public:
  explicit Impl(Options o) : o_(std::move(o)), creds_(net::ChannelCredentials(o_.tls)) {}

  // A stub to call `peer` with, or UNAVAILABLE at once while it cools off.
  StatusOr<Ticket> Admit(const Peer& peer, Deadline deadline) {
    Ticket t;
    const Deadline bound = Clock::now() + o_.call_timeout;
    t.full_timeout = bound <= deadline;
    t.deadline = std::min(bound, deadline);
    std::lock_guard lock(mu_);
    PeerState& s = peers_[peer.node];
    s.link.node = peer.node;
    const std::string target = net::Target(peer.address, peer.port);
    if (s.target != target || !s.stub) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
      args.SetMaxReceiveMessageSize(16 << 20);
      // Received bytes land in slices of at most 64 KiB, below malloc's mmap threshold: served
      // from its reused heap rather than from fresh mappings (faulted in and zeroed on every
      // read, as gRPC's default of up to 4 MiB per slice made them). twd keeps the heap's
      // freed memory (mesh_front.cc).
      args.SetInt(GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE, 64 << 10);
      args.SetInt(
          GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
          static_cast<int>(
              std::chrono::duration_cast<std::chrono::milliseconds>(o_.cooloff_initial).count()));
      args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
      args.SetInt(
          GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
          static_cast<int>(
              std::chrono::duration_cast<std::chrono::milliseconds>(o_.cooloff_max).count()));
      if (!o_.tls.server_name.empty()) {
        args.SetSslTargetNameOverride(o_.tls.server_name);
      }
      s.channel = grpc::CreateCustomChannel(target, creds_, args);
      s.stub = std::make_shared<pb::Peer::Stub>(s.channel);
      s.target = target;
      s.wire_port = -1;
      wire_.Drop(peer.node);
    }
    if (s.consecutive_failures > 0) {
      if (o_.now() < s.cool_until || s.probing) {
        stats_.fast_fails++;
        return UnavailableError(
            StrCat("peer ", peer.node, " is down (cooling off after: ", s.link.last_error, ")"));
      }
      s.probing = true;
      t.probe = true;
    }
    stats_.calls++;
    t.stub = s.stub;
    t.channel = s.channel;
    // The raw wire carries no TLS: under mutual TLS every call stays on gRPC.
    t.wire_port = o_.tls.enabled() ? 0 : s.wire_port;
    return t;
  }

  // The peer's raw-wire port (0: use gRPC), asking its Health the first time (and after a
  // failure, as a restarted peer may have changed).
  uint32_t WirePort(const Peer& peer, Ticket& t) {
    if (t.wire_port >= 0) return static_cast<uint32_t>(t.wire_port);
    grpc::ClientContext ctx;
    ctx.set_deadline(ToSystem(t.deadline));
    pb::HealthRequest req;
    pb::HealthResponse resp;
    if (!t.stub->Health(&ctx, req, &resp).ok()) return 0;  // the gRPC call will say why
    std::lock_guard lock(mu_);
    PeerState& s = peers_[peer.node];
    if (s.stub == t.stub) s.wire_port = resp.wire_port();
    t.wire_port = resp.wire_port();
    return resp.wire_port();
  }

  net::WirePool& wire() { return wire_; }

  // Records a call's outcome. Returns `status` for chaining.
  Status Done(const std::string& node, const Ticket& t, Status status) {
    const bool unreachable = status.code() == StatusCode::kUnavailable ||
                             (status.code() == StatusCode::kDeadlineExceeded && t.full_timeout);
    std::lock_guard lock(mu_);
    PeerState& s = peers_[node];
    if (t.probe) s.probing = false;
    if (status.ok()) {
      s.consecutive_failures = 0;
      s.link.up = true;
      return status;
    }
    if (status.code() == StatusCode::kDeadlineExceeded && !t.full_timeout) {
      return status;  // the caller's deadline was short: no fault of the peer's
    }
    s.link.failures++;
    s.link.last_error = std::string(status.message());
    stats_.failures++;
    if (unreachable) {
      s.wire_port = -1;
      wire_.Drop(node);
      s.consecutive_failures++;
      const uint32_t shift = std::min<uint32_t>(s.consecutive_failures - 1, 20);
      const auto backoff =
          std::min<std::chrono::nanoseconds>(o_.cooloff_initial * (1u << shift), o_.cooloff_max);
      s.cool_until = o_.now() + backoff;
      s.link.up = false;
    }
    return status;
  }

  bool CoolingOff(const std::string& node) const {
    std::lock_guard lock(mu_);
    auto it = peers_.find(node);
    return it != peers_.end() && it->second.consecutive_failures > 0 &&
           (o_.now() < it->second.cool_until || it->second.probing);
  }

  void CountFetch(const std::string& node, uint64_t bytes) {
    std::lock_guard lock(mu_);
    PeerState& s = peers_[node];
    s.link.fetches++;
    s.link.bytes_in += bytes;
  }

  std::vector<LinkStats> Links() const {
    std::lock_guard lock(mu_);
    std::vector<LinkStats> out;
    for (const auto& [node, s] : peers_) out.push_back(s.link);
    std::sort(out.begin(), out.end(),
              [](const LinkStats& a, const LinkStats& b) { return a.node < b.node; });
    return out;
  }

  Stats GetStats() const {
    std::lock_guard lock(mu_);
    return stats_;
  }

  const Options& options() const { return o_; }

 private:
  const Options o_;
  const std::shared_ptr<grpc::ChannelCredentials> creds_;
  net::WirePool wire_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, PeerState> peers_;  // GUARDED_BY(mu_)
  Stats stats_;                                        // GUARDED_BY(mu_)
};

PeerClient::PeerClient(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}
PeerClient::~PeerClient() = default;

namespace {

Status Expired(const char* what) {
  return DeadlineExceededError(StrCat(what, ": the request's deadline has passed"));
}

// A Locate answer, packed (peer.proto) or one message per key, as n keys' holders.
Status DecodeLocate(const pb::LocateResponse& resp, size_t n, PeerClient::Holders* out) {
  *out = PeerClient::Holders{};
  if (resp.keys_size() > 0 || (n > 0 && resp.packed_holders().empty())) {
    if (resp.keys_size() != static_cast<int>(n)) {
      return InternalError(StrCat(resp.keys_size(), " answers for ", n, " keys"));
    }
    for (size_t k = 0; k < n; ++k) {
      for (const std::string& node : resp.keys(static_cast<int>(k)).nodes()) {
        out->index.push_back(static_cast<uint32_t>(out->names.size()));
        out->names.push_back(node);
      }
      out->offsets.push_back(static_cast<uint32_t>(out->index.size()));
    }
    return OkStatus();
  }
  out->names.assign(resp.node_names().begin(), resp.node_names().end());
  Status st = net::DecodePackedHolders(resp.packed_holders(), n, out->names.size(), &out->offsets,
                                       &out->index);
  if (!st.ok()) return InternalError(std::string(st.message()));
  return OkStatus();
}

}  // namespace

static PeerClient::Holders Packed(net::LocateAnswer&& a) {
  PeerClient::Holders h;
  h.names = std::move(a.names);
  h.offsets = std::move(a.offsets);
  h.index = std::move(a.index);
  return h;
}
static StatusOr<PeerClient::Holders> Packed(StatusOr<net::LocateAnswer>&& a) {
  if (!a.ok()) return a.status();
  return Packed(std::move(*a));
}

Status PeerClient::Update(const Peer& home, const UpdateBatch& batch, Deadline deadline) {
  if (Clock::now() >= deadline) return Expired("update");
  TW_ASSIGN_OR_RETURN(Ticket t, impl_->Admit(home, deadline));
  pb::UpdateRequest req;
  req.set_from_node(batch.from_node);
  for (const mesh::Update& u : batch.updates) {
    pb::PeerUpdate* p = req.add_updates();
    p->set_dir_key(std::string(u.key.View()));
    p->set_withdraw(u.kind == UpdateKind::kWithdraw);
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(ToSystem(t.deadline));
  pb::UpdateResponse resp;
  return impl_->Done(home.node, t,
                     FromGrpc(t.stub->Update(&ctx, req, &resp), "update to " + home.node));
}

std::vector<StatusOr<PeerClient::Holders>> PeerClient::LocateMany(std::span<const LocateCall> calls,
                                                                  Deadline deadline) {
  std::vector<StatusOr<Holders>> out(calls.size(), UnavailableError("locate: not sent"));
  struct Pending {
    grpc::ClientContext ctx;
    pb::LocateResponse resp;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<pb::LocateResponse>> rpc;
    Ticket ticket;
    size_t index = 0;
  };
  // A home on the raw wire: its request is sent with the others, its answer read after.
  struct OnWire {
    Ticket ticket;
    size_t index = 0;
    uint32_t port = 0;
    net::WirePool::Taken conn;
    Status sent;
  };
  std::vector<std::unique_ptr<Pending>> pending;
  std::vector<OnWire> on_wire;
  grpc::CompletionQueue cq;
  for (size_t i = 0; i < calls.size(); ++i) {
    if (Clock::now() >= deadline) {
      out[i] = Expired("locate");
      continue;
    }
    auto ticket = impl_->Admit(*calls[i].peer, deadline);
    if (!ticket.ok()) {
      out[i] = ticket.status();
      continue;
    }
    const Peer& peer = *calls[i].peer;
    if (const uint32_t port = impl_->WirePort(peer, *ticket); port != 0) {
      OnWire w;
      w.ticket = std::move(*ticket);
      w.index = i;
      w.port = port;
      auto conn = impl_->wire().Take(peer.node, peer.address, port, w.ticket.deadline);
      w.sent = conn.status();
      if (conn.ok()) {
        w.conn = *conn;
        w.sent = net::WireLocateSend(w.conn.fd, calls[i].dir_keys, w.ticket.deadline);
      }
      on_wire.push_back(std::move(w));
      continue;
    }
    pb::LocateRequest req;
    std::string* packed = req.mutable_packed_dir_keys();
    packed->resize(32 * calls[i].dir_keys.size());
    for (size_t k = 0; k < calls[i].dir_keys.size(); ++k) {
      std::memcpy(packed->data() + 32 * k, calls[i].dir_keys[k].bytes.data(), 32);
    }
    auto p = std::make_unique<Pending>();
    p->ticket = std::move(*ticket);
    p->index = i;
    p->ctx.set_deadline(ToSystem(p->ticket.deadline));
    p->rpc = p->ticket.stub->AsyncLocate(&p->ctx, req, &cq);
    p->rpc->Finish(&p->resp, &p->status, p.get());
    pending.push_back(std::move(p));
  }
  // Every request is out: the answers are read in turn, the wait bounded by the slowest home.
  for (OnWire& w : on_wire) {
    const LocateCall& call = calls[w.index];
    const std::string& node = call.peer->node;
    StatusOr<Holders> h = w.sent;
    size_t got = 0;
    if (w.sent.ok())
      h = Packed(net::WireLocateRecv(w.conn.fd, call.dir_keys.size(), w.ticket.deadline, &got));
    // An idle connection the peer closed meanwhile (e.g. it restarted): once more on a new one.
    if (!h.ok() && w.conn.reused && got == 0 && h.status().code() == StatusCode::kUnavailable) {
      close(w.conn.fd);
      w.conn = {};
      auto conn = impl_->wire().Take(node, call.peer->address, w.port, w.ticket.deadline, true);
      h = conn.status();
      if (conn.ok()) {
        w.conn = *conn;
        Status st = net::WireLocateSend(w.conn.fd, call.dir_keys, w.ticket.deadline);
        h = st.ok() ? Packed(net::WireLocateRecv(w.conn.fd, call.dir_keys.size(), w.ticket.deadline,
                                                 &got))
                    : StatusOr<Holders>(st);
      }
    }
    if (h.ok()) {
      impl_->wire().Give(node, w.conn.fd);
    } else if (w.conn.fd >= 0) {
      close(w.conn.fd);
    }
    Status st = h.ok() ? OkStatus() : h.status().WithPrefix("locate at " + node);
    st = impl_->Done(node, w.ticket, std::move(st));
    if (!st.ok()) {
      out[w.index] = std::move(st);
      continue;
    }
    out[w.index] = std::move(h);
  }
  // Every call carries a deadline, so each completes by it.
  for (size_t done = 0; done < pending.size(); ++done) {
    void* tag = nullptr;
    bool ok = false;
    if (!cq.Next(&tag, &ok)) break;
    Pending* p = static_cast<Pending*>(tag);
    const LocateCall& call = calls[p->index];
    Status st = FromGrpc(p->status, "locate at " + call.peer->node);
    Holders h;
    if (st.ok()) {
      Status bad = DecodeLocate(p->resp, call.dir_keys.size(), &h);
      if (!bad.ok()) st = InternalError(StrCat("locate at ", call.peer->node, ": ", bad.message()));
    }
    st = impl_->Done(call.peer->node, p->ticket, std::move(st));
    if (!st.ok()) {
      out[p->index] = std::move(st);
      continue;
    }
    out[p->index] = std::move(h);
  }
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
  return out;
}

FetchResult PeerClient::Fetch(const Peer& holder, const FetchSpec& spec, std::span<std::byte> dest,
                              Deadline deadline) {
  FetchResult r;
  auto unreachable = [&](Status why) {
    r = FetchResult{};
    r.miss = MissReason::kPeerUnreachable;
    r.error = std::move(why);
    return r;
  };
  if (Clock::now() >= deadline) return unreachable(Expired("fetch"));
  auto ticket = impl_->Admit(holder, deadline);
  if (!ticket.ok()) return unreachable(ticket.status());
  const Ticket& t = *ticket;
  const std::string what = "fetch from " + holder.node;
  if (const uint32_t port = impl_->WirePort(holder, *ticket); port != 0) {
    // The raw wire: the value straight from the socket into `dest`.
    auto conn = impl_->wire().Take(holder.node, holder.address, port, t.deadline);
    StatusOr<FetchResult> r = conn.status();
    bool reusable = false;
    size_t got = 0;
    if (conn.ok()) {
      r = net::WireFetch(conn->fd, spec, impl_->options().self, dest, t.deadline, &reusable, &got);
      // An idle connection the peer closed meanwhile: once more on a new one.
      if (!r.ok() && conn->reused && got == 0 && r.status().code() == StatusCode::kUnavailable) {
        close(conn->fd);
        conn = impl_->wire().Take(holder.node, holder.address, port, t.deadline, true);
        r = conn.status();
        if (conn.ok()) {
          r = net::WireFetch(conn->fd, spec, impl_->options().self, dest, t.deadline, &reusable,
                             &got);
        }
      }
      if (conn.ok()) {
        if (reusable) {
          impl_->wire().Give(holder.node, conn->fd);
        } else {
          close(conn->fd);  // nothing more is read from it: `dest` is no longer written
        }
      }
    }
    if (!r.ok()) {
      FetchResult u;
      u.miss = MissReason::kPeerUnreachable;
      u.error = impl_->Done(holder.node, t, r.status().WithPrefix(what));
      return u;
    }
    impl_->Done(holder.node, t, OkStatus()).IgnoreError();  // the peer answered
    if (r->miss == MissReason::kNone) {
      impl_->CountFetch(holder.node, r->bytes);
    } else if (r->miss != MissReason::kIoError) {
      r->error = NotFoundError(StrCat(what, ": ", r->error.message()));
    }
    return std::move(*r);
  }

  pb::FetchRequest req;
  req.set_namespace_digest(std::string(spec.namespace_digest.View()));
  req.set_key(std::string(spec.key.View()));
  req.set_from_node(impl_->options().self);
  grpc::ClientContext ctx;
  ctx.set_deadline(ToSystem(t.deadline));
  // The stream read as raw messages (fetch_wire.h): a data message's bytes go from gRPC's
  // slices straight into `dest`, no protobuf message in between.
  static const char kFetchMethod[] = "/tokenwarehouse.v1.Peer/Fetch";
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
          t.channel.get(),
          grpc::internal::RpcMethod(kFetchMethod, grpc::internal::RpcMethod::SERVER_STREAMING,
                                    t.channel),
          &ctx, req));

  // The protocol's faults end the call at once; gRPC cancels the stream.
  auto fail = [&](MissReason miss, Status why) {
    ctx.TryCancel();
    reader->Finish().ok();  // drains the cancelled call; its status is `why`
    impl_->Done(holder.node, t, OkStatus()).IgnoreError();  // the peer answered
    std::vector<uint64_t> sizes = std::move(r.segment_sizes);
    r = FetchResult{};
    r.miss = miss;
    r.error = std::move(why);
    if (miss == MissReason::kIoError) r.segment_sizes = std::move(sizes);
    return r;
  };

  grpc::ByteBuffer raw;
  pb::FetchHeader h;
  {
    if (!reader->Read(&raw)) {
      Status st = FromGrpc(reader->Finish(), what);
      if (st.ok()) st = InternalError(what + ": the stream carried no header");
      // Down, too slow, overloaded (RESOURCE_EXHAUSTED) or refusing us: the holder could not
      // serve, whatever it holds.
      return unreachable(impl_->Done(holder.node, t, std::move(st)));
    }
    std::optional<std::string> header;
    bool data_first = false;
    Status st = net::WalkFetchChunk(raw, &header, [&](const std::byte*, size_t) {
      data_first = true;
      return OkStatus();
    });
    if (st.ok() && (data_first || !header)) {
      st = InternalError(what + ": the stream carried no header");
    }
    if (st.ok() && !h.ParseFromString(*header)) st = InternalError(what + ": malformed header");
    if (!st.ok()) return fail(MissReason::kIoError, std::move(st));
  }
  if (h.miss_reason() != 0) {
    reader->Finish().ok();
    impl_->Done(holder.node, t, OkStatus()).IgnoreError();
    r.miss = h.miss_reason() < kMissReasonCount ? static_cast<MissReason>(h.miss_reason())
                                                : MissReason::kIoError;
    r.error = NotFoundError(StrCat(what, ": ", ToString(r.miss), " ", h.error()));
    return r;
  }
  uint64_t sum = 0;
  r.segment_sizes.assign(h.segment_sizes().begin(), h.segment_sizes().end());
  for (uint64_t s : r.segment_sizes) sum += s;
  if (sum != h.value_size()) {
    return fail(MissReason::kIoError, InternalError(what + ": segment sizes do not add up"));
  }
  if (h.value_size() > dest.size()) {
    return fail(MissReason::kIoError,
                InvalidArgumentError(StrCat("remote value of ", h.value_size(),
                                            " bytes does not fit ", dest.size(), " bytes")));
  }
  ChunkLineage lineage;
  if (h.parent().size() == 32) {
    lineage.parent = *Key::FromBytes(h.parent());
    lineage.extra = h.extra();
    lineage.tokens.assign(h.tokens().begin(), h.tokens().end());
  }
  // The bytes, straight from the received slices into the destination. Only this thread
  // writes `dest`, and only before Fetch returns.
  uint64_t at = 0;
  const uint64_t size = h.value_size();
  auto place = [&](const std::byte* p, size_t n) {
    if (n > size - at) return InternalError(what + ": more bytes than the value");
    std::memcpy(dest.data() + at, p, n);
    at += n;
    return OkStatus();
  };
  while (reader->Read(&raw)) {
    Status st = net::WalkFetchChunk(raw, nullptr, place);
    if (!st.ok()) return fail(MissReason::kIoError, std::move(st));
  }
  Status st = impl_->Done(holder.node, t, FromGrpc(reader->Finish(), what));
  if (!st.ok()) return unreachable(std::move(st));
  if (at != h.value_size()) {
    r.segment_sizes.clear();
    r.miss = MissReason::kIoError;
    r.error =
        InternalError(StrCat(what, ": stream ended after ", at, " of ", h.value_size(), " bytes"));
    return r;
  }
  if (h.parent().size() == 32) r.lineage = std::move(lineage);
  r.bytes = at;
  impl_->CountFetch(holder.node, at);
  return r;
}

StatusOr<PeerClient::ConnectReply> PeerClient::Connect(const Peer& peer,
                                                       std::vector<std::string> transports,
                                                       std::string transport_data,
                                                       Deadline deadline) {
  if (Clock::now() >= deadline) return Expired("connect");
  TW_ASSIGN_OR_RETURN(Ticket t, impl_->Admit(peer, deadline));
  pb::ConnectRequest req;
  req.set_from_node(impl_->options().self);
  for (auto& s : transports) req.add_transports(std::move(s));
  req.set_transport_data(std::move(transport_data));
  grpc::ClientContext ctx;
  ctx.set_deadline(ToSystem(t.deadline));
  pb::ConnectResponse resp;
  TW_RETURN_IF_ERROR(impl_->Done(
      peer.node, t, FromGrpc(t.stub->Connect(&ctx, req, &resp), "connect to " + peer.node)));
  ConnectReply out;
  out.node = resp.node();
  out.transports.assign(resp.transports().begin(), resp.transports().end());
  out.transport_data = resp.transport_data();
  return out;
}

StatusOr<std::string> PeerClient::Health(const Peer& peer, Deadline deadline) {
  if (Clock::now() >= deadline) return Expired("health");
  TW_ASSIGN_OR_RETURN(Ticket t, impl_->Admit(peer, deadline));
  grpc::ClientContext ctx;
  ctx.set_deadline(ToSystem(t.deadline));
  pb::HealthRequest req;
  pb::HealthResponse resp;
  TW_RETURN_IF_ERROR(impl_->Done(
      peer.node, t, FromGrpc(t.stub->Health(&ctx, req, &resp), "health of " + peer.node)));
  return resp.node();
}

bool PeerClient::CoolingOff(const std::string& node) const { return impl_->CoolingOff(node); }
std::vector<LinkStats> PeerClient::Links() const { return impl_->Links(); }
PeerClient::Stats PeerClient::GetStats() const { return impl_->GetStats(); }

}  // namespace tw::mesh
