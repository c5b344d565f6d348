#include "socket_codec.h"

#include <algorithm>
#include <array>

#include "service_metrics.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/protocol/wire_enums.h"

namespace tw::twd {
namespace {

using protocol::FromProto;
using protocol::KeyFromBytes;
using protocol::Opcode;
using protocol::ToProto;

Deadline DeadlineFrom(uint64_t timeout_us, Clock::time_point received) {
  if (timeout_us == 0) return Deadline::max();
  // Cap at a day so the addition cannot overflow.
  const uint64_t us = std::min<uint64_t>(timeout_us, uint64_t{86400} * 1000000);
  return received + std::chrono::microseconds(us);
}

ChunkRef RefFrom(const pb::KeyRef& r) {
  return {KeyFromBytes(r.key()), KeyFromBytes(r.namespace_digest())};
}

std::vector<ChunkRef> RefsFrom(const google::protobuf::RepeatedPtrField<pb::KeyRef>& refs) {
  std::vector<ChunkRef> out;
  out.reserve(refs.size());
  for (const auto& r : refs) out.push_back(RefFrom(r));
  return out;
}

std::vector<ArenaRange> RangesFrom(
    const google::protobuf::RepeatedPtrField<pb::ScatterEntry>& ranges) {
  std::vector<ArenaRange> out;
  out.reserve(ranges.size());
  for (const auto& e : ranges) {
    out.push_back({e.segment(), e.offset(), e.length(), e.arena_offset()});
  }
  return out;
}

std::vector<Namespace> NamespacesFrom(
    const google::protobuf::RepeatedPtrField<pb::Namespace>& list) {
  std::vector<Namespace> out;
  out.reserve(list.size());
  for (const auto& n : list) out.push_back(protocol::FromProto(n));
  return out;
}

void AddDigests(const std::vector<Key>& digests,
                google::protobuf::RepeatedPtrField<std::string>* out) {
  for (const Key& k : digests) out->Add(std::string(k.View()));
}

void FillTier(const store::TierStats& t, Tier tier, pb::TierStats* out) {
  out->set_tier(ToProto(tier));
  out->set_hits(t.hits);
  for (size_t r = 1; r < kMissReasonCount; ++r) {
    (*out->mutable_misses())[std::string(ToString(static_cast<MissReason>(r)))] =
        t.misses_by_reason[r];
  }
  out->set_bytes_read(t.bytes_read);
  out->set_bytes_written(t.bytes_written);
  out->set_evictions(t.evictions);
  out->set_io_errors(t.io_errors);
  out->set_corrupt(t.corrupt);
  out->set_used_bytes(t.used_bytes);
  out->set_capacity_bytes(t.capacity_bytes);
  out->set_chunks(t.chunks);
}

pb::StatsResponse StatsToProto(const ServiceStats& st) {
  pb::StatsResponse resp;
  FillTier(st.store.dram, Tier::kDram, resp.add_tiers());
  FillTier(st.store.nvme, Tier::kNvme, resp.add_tiers());
  for (size_t i = 0; i < kPutResultCount; ++i) {
    (*resp.mutable_puts())[std::string(ToString(static_cast<PutResult>(i)))] = st.puts_by_result[i];
  }
  resp.set_get_hits(st.get_hits);
  for (size_t r = 1; r < kMissReasonCount; ++r) {
    (*resp.mutable_get_misses())[std::string(ToString(static_cast<MissReason>(r)))] =
        st.get_misses_by_reason[r];
  }
  resp.set_dropped_unwritten(st.store.dropped_unwritten);
  resp.set_connected_clients(st.connected_clients);
  resp.set_live_leases(st.live_leases);
  resp.set_server_version(st.server_version);
  resp.set_version(st.version);
  resp.set_arena_size(st.arena_size);
  resp.set_tenant(st.tenant);
  resp.set_gpu(st.gpu);
  return resp;
}

pb::AdminPeersResponse PeersToProto(const std::optional<PeersReport>& report) {
  pb::AdminPeersResponse resp;
  if (!report) return resp;
  resp.set_enabled(true);
  resp.set_node(report->self);
  resp.set_transport(report->transport);
  resp.set_membership_version(report->membership_version);
  resp.set_directory_keys(report->directory_keys);
  resp.set_announce_batches_failed(report->announce_batches_failed);
  for (const mesh::LinkStats& l : report->links) {
    pb::PeerLink* p = resp.add_peers();
    p->set_node(l.node);
    p->set_up(l.up);
    p->set_transport(std::string(mesh::ToString(l.kind)));
    p->set_fetches(l.fetches);
    p->set_failures(l.failures);
    p->set_bytes_in(l.bytes_in);
    p->set_bytes_out(l.bytes_out);
    p->set_last_error(l.last_error);
  }
  return resp;
}

// The byte of each Tier in a packed tier list: ToProto's mapping, tabled once (a lookup
// converts one tier per chunk).
class PackedTiers {
 public:
  PackedTiers() {
    for (size_t i = 0; i < bytes_.size(); ++i) {
      bytes_[i] = static_cast<char>(ToProto(static_cast<Tier>(i)));
    }
  }
  void Fill(const std::vector<Tier>& tiers, std::string* out) const {
    out->resize(tiers.size());
    char* p = out->data();
    for (size_t j = 0; j < tiers.size(); ++j) {
      const auto t = static_cast<size_t>(tiers[j]);
      p[j] = t < bytes_.size() ? bytes_[t] : static_cast<char>(ToProto(tiers[j]));
    }
  }

 private:
  std::array<char, 4> bytes_{};  // Tier::kNone, kDram, kNvme, kPeer
};

// ---- one function per request: wire → domain → core → wire -----------------------------

StatusOr<pb::LookupResponse> Lookup(ServiceCore& core, Session& s, const pb::LookupRequest& r,
                                    Clock::time_point received) {
  const protocol::ArenaKeys arena_keys = core.LookupNeedsStableKeys(r.take_lease())
                                             ? protocol::ArenaKeys::kCopy
                                             : protocol::ArenaKeys::kInPlace;
  const std::span<const uint8_t> arena(s.arena.data(), s.arena.size());
  size_t chains = 0;
  for (const auto& item : r.items()) chains += static_cast<size_t>(item.chains_size());
  // One scratch per chain: the views of copied keys must stay valid until the core is done.
  std::vector<std::vector<Key>> scratch(chains);
  LookupRequest req;
  req.take_lease = r.take_lease();
  req.deadline = DeadlineFrom(r.timeout_us(), received);
  req.items.resize(r.items_size());
  size_t c = 0;
  for (int i = 0; i < r.items_size(); ++i) {
    const pb::LookupItem& item = r.items(i);
    req.items[i].chains.reserve(item.chains_size());
    for (const pb::KeyChain& chain : item.chains()) {
      req.items[i].chains.push_back(
          {KeyFromBytes(chain.namespace_digest()),
           protocol::ChainKeysView(chain, arena, arena_keys, &scratch[c++])});
    }
  }
  TW_ASSIGN_OR_RETURN(std::vector<LookupItemResult> results, core.Lookup(s, req));
  pb::LookupResponse resp;
  const bool packed = s.version >= protocol::kPackedKeysVersion;
  for (const LookupItemResult& res : results) {
    pb::LookupResult* out = resp.add_results();
    out->set_prefix(static_cast<uint32_t>(res.prefix));
    out->set_miss(ToProto(res.miss));
    if (res.lease != 0) out->set_lease(res.lease);
    for (const std::vector<Tier>& tiers : res.tiers) {
      pb::ChainTiers* ct = out->add_chains();
      if (packed) {
        // Version 2: one byte per chunk, filled in place.
        static const PackedTiers kPacked;
        kPacked.Fill(tiers, ct->mutable_packed_tiers());
      } else {
        for (Tier t : tiers) ct->add_tiers(ToProto(t));
      }
    }
  }
  return resp;
}

StatusOr<pb::GetResponse> Get(ServiceCore& core, Session& s, const pb::GetRequest& r,
                              Clock::time_point received) {
  GetRequest req;
  req.deadline = DeadlineFrom(r.timeout_us(), received);
  req.items.reserve(r.items_size());
  for (const pb::GetItem& item : r.items()) {
    req.items.push_back({RefFrom(item.ref()), RangesFrom(item.ranges()), item.arena_offset(),
                         item.arena_length(), item.lease()});
  }
  TW_ASSIGN_OR_RETURN(std::vector<GetItemResult> results, core.Get(s, req));
  pb::GetResponse resp;
  for (const GetItemResult& g : results) {
    pb::GetResult* out = resp.add_results();
    out->set_tier(ToProto(g.tier));
    out->set_miss(ToProto(g.miss));
    out->set_bytes(g.bytes);
    for (uint64_t sz : g.segment_sizes) out->add_segment_sizes(sz);
  }
  return resp;
}

StatusOr<pb::PutResponse> Put(ServiceCore& core, Session& s, const pb::PutRequest& r,
                              Clock::time_point received) {
  PutRequest req;
  req.deadline = DeadlineFrom(r.timeout_us(), received);
  req.items.reserve(r.items_size());
  for (const pb::PutItem& item : r.items()) {
    PutItem p;
    p.ref = RefFrom(item.ref());
    p.parent = KeyFromBytes(item.parent());
    p.extra = item.extra();
    p.tokens.assign(item.tokens().begin(), item.tokens().end());
    p.segment_sizes.assign(item.segment_sizes().begin(), item.segment_sizes().end());
    p.ranges = RangesFrom(item.ranges());
    p.durability = FromProto(item.durability());
    req.items.push_back(std::move(p));
  }
  TW_ASSIGN_OR_RETURN(std::vector<PutItemResult> results, core.Put(s, req));
  pb::PutResponse resp;
  for (PutItemResult& res : results) {
    pb::PutItemResult* out = resp.add_results();
    out->set_result(ToProto(res.result));
    if (!res.message.empty()) out->set_message(std::move(res.message));
  }
  return resp;
}

StatusOr<pb::ExistsResponse> Exists(ServiceCore& core, Session& s, const pb::ExistsRequest& r) {
  const std::vector<ChunkRef> refs = RefsFrom(r.items());
  TW_ASSIGN_OR_RETURN(std::vector<ExistsItemResult> results, core.Exists(s, refs));
  pb::ExistsResponse resp;
  for (const ExistsItemResult& e : results) {
    pb::ExistsResult* out = resp.add_results();
    if (!e.exists) continue;
    out->set_exists(true);
    out->set_tier(ToProto(e.tier));
    out->set_value_size(e.value_size);
    for (uint64_t sz : e.segment_sizes) out->add_segment_sizes(sz);
  }
  return resp;
}

StatusOr<pb::DeleteResponse> Delete(ServiceCore& core, Session& s, const pb::DeleteRequest& r) {
  const std::vector<ChunkRef> refs = RefsFrom(r.items());
  TW_ASSIGN_OR_RETURN(std::vector<bool> deleted, core.Delete(s, refs));
  pb::DeleteResponse resp;
  for (bool d : deleted) resp.add_deleted(d);
  return resp;
}

pb::NamespacesResponse Namespaces(ServiceCore& core) {
  pb::NamespacesResponse resp;
  for (const NamespaceListing& l : core.Namespaces()) {
    pb::NamespaceInfo* n = resp.add_namespaces();
    n->set_namespace_digest(std::string(l.usage.namespace_digest.View()));
    n->set_chunks(l.usage.chunks);
    n->set_bytes(l.usage.bytes);
    n->set_quota(l.usage.quota);
    if (l.fields_known) {
      *n->mutable_fields() = protocol::ToProto(l.fields);
      n->set_fields_known(true);
    }
  }
  return resp;
}

}  // namespace

protocol::MessageLimits SocketCodec::Limits(const Session& session) const {
  const auto cfg = core_->config();
  protocol::MessageLimits l;
  l.max_batch = cfg->limits.max_batch;
  l.max_value_size = cfg->limits.max_value_size;
  l.arena_size = session.arena.size();
  l.max_namespaces = ServiceCore::kMaxNamespacesPerSession;
  return l;
}

StatusOr<pb::HelloResponse> SocketCodec::Hello(Session& session, const pb::HelloRequest& request,
                                               std::vector<protocol::UniqueFd> fds) {
  HelloRequest req;
  req.min_version = request.min_version();
  req.max_version = request.max_version();
  req.client_name = request.client_name();
  req.arena_size = request.arena_size();
  req.fds = std::move(fds);
  req.namespaces = NamespacesFrom(request.namespaces());
  TW_ASSIGN_OR_RETURN(HelloResult r, core_->Hello(session, std::move(req)));
  pb::HelloResponse resp;
  AddDigests(r.namespace_digests, resp.mutable_namespace_digests());
  resp.set_version(r.version);
  resp.set_server_version(r.server_version);
  resp.set_tenant(r.tenant);
  resp.set_session_id(r.session_id);
  resp.set_lease_duration_us(static_cast<uint64_t>(r.lease_duration.count()));
  pb::ConnectionLimits* l = resp.mutable_limits();
  l->set_max_inflight(r.limits.max_inflight);
  l->set_max_batch(r.limits.max_batch);
  l->set_max_frame_size(r.limits.max_frame_size);
  l->set_max_value_size(r.limits.max_value_size);
  l->set_max_arena_size(r.limits.max_arena_size);
  l->set_max_leases(r.limits.max_leases);
  l->set_max_leased_bytes(r.limits.max_leased_bytes);
  l->set_max_namespaces(r.limits.max_namespaces);
  return resp;
}

bool SocketCodec::CanRunInline(protocol::Opcode op,
                               const google::protobuf::MessageLite& request) const {
  if (op == Opcode::kPing) return true;
  if (op != Opcode::kLookup) return false;
  // With the mesh, a lookup may ask other nodes: never on the reactor.
  if (core_->LookupMayWait()) return false;
  // A lookup never waits for I/O (the index, leases and the tenant check are memory), but a
  // huge one would hold up every other connection: those go to a worker.
  size_t keys = 0;
  for (const auto& item : static_cast<const pb::LookupRequest&>(request).items()) {
    for (const auto& chain : item.chains()) keys += protocol::ChainLength(chain);
  }
  return keys <= kInlineLookupKeys;
}

namespace {

// The chunks of a put, as the core's pending-put table names them. Items whose refs are
// malformed are skipped (the request is refused later anyway).
std::vector<ChunkRef> PutRefs(const pb::PutRequest& request) {
  std::vector<ChunkRef> refs;
  refs.reserve(request.items_size());
  for (const auto& item : request.items()) {
    if (item.ref().key().size() != sizeof(Key::bytes) ||
        item.ref().namespace_digest().size() != sizeof(Key::bytes)) {
      continue;
    }
    refs.push_back(RefFrom(item.ref()));
  }
  return refs;
}

}  // namespace

void SocketCodec::OnPutQueued(const pb::PutRequest& request) {
  core_->OnPutQueued(PutRefs(request));
}

void SocketCodec::OnPutDone(const pb::PutRequest& request) { core_->OnPutDone(PutRefs(request)); }

std::vector<std::string> SocketCodec::Export(uint64_t request_id, const pb::ExportRequest& r,
                                             const Emit& emit, uint64_t* exported) {
  constexpr int kPerFrame = 1024;
  ExportRequest req;
  req.filter_namespace = !r.namespace_digest().empty();
  if (req.filter_namespace) req.namespace_digest = KeyFromBytes(r.namespace_digest());
  req.filter_key = !r.key().empty();
  if (req.filter_key) req.key = KeyFromBytes(r.key());
  req.max_chunks = r.max_chunks();
  std::vector<std::string> frames;
  pb::ExportResponse page;
  const bool finished = core_->Export(req, [&](const ExportedChunk& e) {
    if (page.chunks_size() >= kPerFrame) {
      // A full page goes out now (streamed) or is kept (no emitter); more follow.
      std::string frame =
          protocol::EncodeReply(Opcode::kAdminExport, request_id, page, protocol::kFlagMore);
      page.Clear();
      if (emit) {
        if (!emit(std::move(frame))) return false;
      } else {
        frames.push_back(std::move(frame));
      }
    }
    const store::ChunkMeta& m = *e.meta;
    pb::ExportedChunk* c = page.add_chunks();
    c->set_key(std::string(m.info.key.View()));
    c->set_parent(std::string(m.info.parent.View()));
    c->set_namespace_digest(std::string(m.info.namespace_digest.View()));
    if (e.fields != nullptr) {
      *c->mutable_fields() = protocol::ToProto(*e.fields);
      c->set_fields_known(true);
    }
    for (uint32_t t : m.info.tokens) c->add_tokens(t);
    c->set_extra(m.info.extra);
    c->set_value_size(m.value_size);
    c->set_tier(ToProto(m.tier));
    c->set_created_unix_ms(m.created_unix_ms);
    ++*exported;
    return true;
  });
  if (!finished) return {};  // the connection is gone
  frames.push_back(protocol::EncodeReply(Opcode::kAdminExport, request_id, page));
  return frames;
}

std::vector<std::string> SocketCodec::Handle(Session& session, const protocol::FrameHeader& header,
                                             const google::protobuf::MessageLite& request,
                                             Clock::time_point received, const Emit& emit) {
  ServiceCore& core = *core_;
  const Opcode op = header.opcode;
  const uint64_t id = header.request_id;
  auto reply = [&](const auto& status_or) -> std::vector<std::string> {
    if (!status_or.ok()) {
      ServiceMetrics::Get().ProtocolError("request");
      TW_LOG(kWarn, "request failed",
             {{"session", session.id},
              {"op", protocol::ToString(op)},
              {"status", status_or.status()}});
      return {protocol::EncodeError(op, id, status_or.status(), false)};
    }
    return {protocol::EncodeReply(op, id, *status_or)};
  };
  const bool admin_op = protocol::IsAdminOpcode(op);
  // Every operation on the admin socket (but PING) and every admin operation tried on the
  // client socket leaves an audit line: who, what, on what, with which result.
  std::string audit_target;
  uint64_t audit_count = 0;
  Status audit_result;
  auto audit = [&] {
    if (!(admin_op || session.admin) || op == Opcode::kPing) return;
    log::Audit("admin operation",
               {{"op", protocol::ToString(op)},
                {"socket", session.admin ? "admin" : "client"},
                {"uid", static_cast<uint64_t>(session.peer.uid)},
                {"gid", static_cast<uint64_t>(session.peer.gid)},
                {"pid", static_cast<int64_t>(session.peer.pid)},
                {"session", session.id},
                {"target", audit_target},
                {"result", audit_result.ok() ? std::string("ok") : audit_result.ToString()},
                {"count", audit_count}});
  };
  if (admin_op != session.admin && op != Opcode::kStats && op != Opcode::kPing) {
    ServiceMetrics::Get().ProtocolError("wrong_socket");
    audit_result = PermissionDeniedError(StrCat(protocol::ToString(op), " is not served on the ",
                                                session.admin ? "admin" : "client", " socket"));
    audit();
    return {protocol::EncodeError(op, id, audit_result, false)};
  }
  std::vector<std::string> out;
  switch (op) {
    case Opcode::kDeclareNamespaces: {
      const auto& r = static_cast<const pb::DeclareNamespacesRequest&>(request);
      const std::vector<Namespace> list = NamespacesFrom(r.namespaces());
      auto digests = core.DeclareNamespaces(session, list);
      if (!digests.ok()) {
        out = reply(StatusOr<pb::DeclareNamespacesResponse>(digests.status()));
        break;
      }
      pb::DeclareNamespacesResponse resp;
      AddDigests(*digests, resp.mutable_namespace_digests());
      out = {protocol::EncodeReply(op, id, resp)};
      break;
    }
    case Opcode::kLookup:
      out = reply(Lookup(core, session, static_cast<const pb::LookupRequest&>(request), received));
      break;
    case Opcode::kReleaseLeases: {
      const auto& leases = static_cast<const pb::ReleaseLeasesRequest&>(request).leases();
      pb::ReleaseLeasesResponse resp;
      resp.set_released(core.ReleaseLeases(
          session, std::span<const uint64_t>(leases.data(), static_cast<size_t>(leases.size()))));
      out = {protocol::EncodeReply(op, id, resp)};
      break;
    }
    case Opcode::kGet:
      out = reply(Get(core, session, static_cast<const pb::GetRequest&>(request), received));
      break;
    case Opcode::kPut:
      out = reply(Put(core, session, static_cast<const pb::PutRequest&>(request), received));
      break;
    case Opcode::kExists:
      out = reply(Exists(core, session, static_cast<const pb::ExistsRequest&>(request)));
      break;
    case Opcode::kDelete:
      out = reply(Delete(core, session, static_cast<const pb::DeleteRequest&>(request)));
      break;
    case Opcode::kStats:
      out = {protocol::EncodeReply(op, id, StatsToProto(core.Stats(&session)))};
      break;
    case Opcode::kPing:
      out = {protocol::EncodeReply(op, id, pb::PingResponse())};
      break;
    case Opcode::kAdminNamespaces: {
      pb::NamespacesResponse resp = Namespaces(core);
      audit_count = static_cast<uint64_t>(resp.namespaces_size());
      out = {protocol::EncodeReply(op, id, resp)};
      break;
    }
    case Opcode::kAdminEvictNamespace: {
      const Key ns =
          KeyFromBytes(static_cast<const pb::EvictNamespaceRequest&>(request).namespace_digest());
      audit_target = StrCat("namespace=", ns.Hex());
      pb::EvictNamespaceResponse resp;
      resp.set_evicted(core.EvictNamespace(ns));
      audit_count = resp.evicted();
      out = {protocol::EncodeReply(op, id, resp)};
      break;
    }
    case Opcode::kAdminExport: {
      const auto& r = static_cast<const pb::ExportRequest&>(request);
      if (!r.namespace_digest().empty()) {
        audit_target = StrCat("namespace=", KeyFromBytes(r.namespace_digest()).Hex());
      }
      if (!r.key().empty()) {
        StrAppend(&audit_target, audit_target.empty() ? "" : ",",
                  "key=", KeyFromBytes(r.key()).Hex());
      }
      if (r.max_chunks() != 0) {
        StrAppend(&audit_target, audit_target.empty() ? "" : ",", "max_chunks=", r.max_chunks());
      }
      out = Export(id, r, emit, &audit_count);
      if (out.empty()) audit_result = CancelledError("the connection closed during the export");
      break;
    }
    case Opcode::kAdminStats: {
      pb::AdminStatsResponse resp;
      *resp.mutable_stats() = StatsToProto(core.Stats(nullptr));
      resp.set_metrics_text(core.MetricsText());
      out = {protocol::EncodeReply(op, id, resp)};
      break;
    }
    case Opcode::kAdminPeers:
      out = {protocol::EncodeReply(op, id, PeersToProto(core.Peers()))};
      break;
    case Opcode::kHello:
    case Opcode::kInvalid:
      out = {protocol::EncodeError(op, id, FailedPreconditionError("unexpected hello"), true)};
      break;
  }
  ServiceMetrics::Get().Latency(op, std::chrono::duration<double>(Clock::now() - received).count());
  audit();
  return out;
}

}  // namespace tw::twd
