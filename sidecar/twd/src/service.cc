#include "tw/twd/service.h"

#include <algorithm>

#include "tw/common/log.h"
#include "tw/common/metrics.h"
#include "tw/common/strings.h"
#include "tw/twd/service_metrics.h"

namespace tw::twd {
namespace {

using protocol::Opcode;

store::Deadline DeadlineFrom(uint64_t timeout_us, Service::Clock::time_point received) {
  if (timeout_us == 0) return store::Deadline::max();
  // Cap at a day so the addition cannot overflow.
  const uint64_t us = std::min<uint64_t>(timeout_us, uint64_t{86400} * 1000000);
  return received + std::chrono::microseconds(us);
}

pb::Tier ToProto(store::Tier t) { return static_cast<pb::Tier>(static_cast<int>(t)); }
pb::MissReason ToProto(store::MissReason r) {
  return static_cast<pb::MissReason>(static_cast<int>(r));
}
pb::PutResult ToProto(store::PutResult r) {
  switch (r) {
    case store::PutResult::kStored:
      return pb::PUT_RESULT_STORED;
    case store::PutResult::kExists:
      return pb::PUT_RESULT_EXISTS;
    case store::PutResult::kRejectedAdmission:
      return pb::PUT_RESULT_REJECTED_ADMISSION;
    case store::PutResult::kQuota:
      return pb::PUT_RESULT_QUOTA;
    case store::PutResult::kBusy:
      return pb::PUT_RESULT_BUSY;
    case store::PutResult::kIoError:
      return pb::PUT_RESULT_IO_ERROR;
    case store::PutResult::kInvalid:
      return pb::PUT_RESULT_INVALID;
  }
  return pb::PUT_RESULT_IO_ERROR;
}

void FillTier(const store::TierStats& t, store::Tier tier, pb::TierStats* out) {
  out->set_tier(ToProto(tier));
  out->set_hits(t.hits);
  for (int r = 1; r < 8; ++r) {
    (*out->mutable_misses())[std::string(MissName(static_cast<store::MissReason>(r)))] =
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

}  // namespace

std::string_view ServerVersion() { return "twd 0.1.0 (protocol 1-2)"; }

Service::Service(const config::Config& config, store::Store* store)
    : store_(store), leases_(store) {
  Reconfigure(config);
}

void Service::Reconfigure(const config::Config& config) {
  {
    std::lock_guard lock(mu_);
    config_ = std::make_shared<const config::Config>(config);
  }
  leases_.SetLimits(
      {config.leases.duration, config.leases.max_per_client, config.leases.max_bytes_per_client});
  ServiceMetrics::Get().SetMaxNamespaceLabels(config.metrics.max_namespace_labels);
}

std::shared_ptr<const config::Config> Service::config() const {
  std::lock_guard lock(mu_);
  return config_;
}

StatusOr<std::string> Service::TenantOf(const PeerCredentials& peer) const {
  const auto cfg = config();
  if (cfg->tenants.empty()) return std::string();
  for (const auto& t : cfg->tenants) {
    if (std::find(t.uids.begin(), t.uids.end(), peer.uid) != t.uids.end()) return t.name;
  }
  // Then groups: the primary group first, then the supplementary groups in the order the
  // kernel reports them; the first tenant (in config order) listing one of them wins.
  for (const auto& t : cfg->tenants) {
    if (std::find(t.gids.begin(), t.gids.end(), peer.gid) != t.gids.end()) return t.name;
  }
  for (const auto& t : cfg->tenants) {
    for (gid_t g : peer.groups) {
      if (std::find(t.gids.begin(), t.gids.end(), g) != t.gids.end()) return t.name;
    }
  }
  std::string groups;
  for (gid_t g : peer.groups) StrAppend(&groups, groups.empty() ? "" : ",", g);
  return PermissionDeniedError(StrCat("uid ", peer.uid, " gid ", peer.gid, " groups [", groups,
                                      "] map to no configured tenant"));
}

protocol::MessageLimits Service::Limits(const Session& session) const {
  const auto cfg = config();
  protocol::MessageLimits l;
  l.max_batch = cfg->limits.max_batch;
  l.max_value_size = cfg->limits.max_value_size;
  l.arena_size = session.arena.size();
  return l;
}

StatusOr<DeclaredNamespace> Service::CheckNamespace(Session& session, const pb::Namespace& p,
                                                    Key* digest) {
  Namespace ns = protocol::FromProto(p);
  auto normal = NormalizeNamespace(ns);
  if (!normal.ok()) return normal.status().WithPrefix("namespace");
  if (!(*normal == ns)) {
    return InvalidArgumentError(
        StrCat("namespace is not in canonical spelling (docs/keys.md): kv_dtype '", ns.kv_dtype,
               "'→'", normal->kv_dtype, "', parallel '", ns.parallel, "'→'", normal->parallel,
               "', chunk_tokens '", ns.chunk_tokens, "'→'", normal->chunk_tokens, "'"));
  }
  if (!session.tenant.empty() && ns.tenant != session.tenant) {
    return PermissionDeniedError(StrCat("namespace tenant '", ns.tenant,
                                        "' is not this client's tenant '", session.tenant, "'"));
  }
  DeclaredNamespace d;
  d.chunk_tokens = ChunkTokens(ns).value_or(0);
  d.fields = std::move(ns);
  *digest = NamespaceDigest(d.fields);
  return d;
}

Status Service::Declare(Session& session,
                        const google::protobuf::RepeatedPtrField<pb::Namespace>& list,
                        google::protobuf::RepeatedPtrField<std::string>* digests) {
  std::vector<std::pair<Key, DeclaredNamespace>> checked;
  for (int i = 0; i < list.size(); ++i) {
    Key digest;
    auto d = CheckNamespace(session, list[i], &digest);
    if (!d.ok()) return d.status().WithPrefix(StrCat("namespaces[", i, "]"));
    checked.emplace_back(digest, std::move(*d));
  }
  {
    std::lock_guard lock(session.mu);
    size_t fresh = 0;
    for (const auto& [k, d] : checked) fresh += session.namespaces.contains(k) ? 0 : 1;
    if (session.namespaces.size() + fresh > protocol::MessageLimits().max_namespaces) {
      return ResourceExhaustedError("too many namespaces declared on this connection");
    }
    for (auto& [k, d] : checked) session.namespaces.emplace(k, d);
  }
  std::lock_guard lock(known_mu_);
  for (const auto& [k, d] : checked) {
    // Bounded: clients that declare ever new namespaces must not grow twd without limit.
    // Past the cap the admin listing simply lacks the fields of the newest ones.
    if (known_namespaces_.size() < kMaxKnownNamespaces) known_namespaces_.emplace(k, d.fields);
    digests->Add(std::string(k.View()));
  }
  return OkStatus();
}

StatusOr<DeclaredNamespace> Service::Declared(Session& session, const std::string& digest) {
  auto d = session.Find(protocol::KeyFromBytes(digest));
  if (!d) {
    return PermissionDeniedError(StrCat("namespace ",
                                        protocol::KeyFromBytes(digest).Hex().substr(0, 16),
                                        "… was not declared on this connection"));
  }
  return *d;
}

StatusOr<pb::HelloResponse> Service::Hello(Session& session, const pb::HelloRequest& request,
                                           std::vector<protocol::UniqueFd> fds) {
  const auto cfg_ptr = config();
  const config::Config& cfg = *cfg_ptr;
  const uint32_t lo = std::max(request.min_version(), protocol::kMinProtocolVersion);
  const uint32_t hi = std::min(request.max_version(), protocol::kMaxProtocolVersion);
  if (lo > hi) {
    return UnimplementedError(StrCat("no common protocol version: client speaks [",
                                     request.min_version(), ", ", request.max_version(),
                                     "], twd speaks [", protocol::kMinProtocolVersion, ", ",
                                     protocol::kMaxProtocolVersion, "]"));
  }
  TW_ASSIGN_OR_RETURN(session.tenant, TenantOf(session.peer));
  if (fds.size() > 1) return InvalidArgumentError("more than one descriptor passed with hello");
  if (request.arena_size() == 0) {
    if (!fds.empty()) return InvalidArgumentError("a descriptor was passed with arena_size 0");
  } else {
    if (fds.empty()) return InvalidArgumentError("arena_size given but no memfd was passed");
    if (request.arena_size() > cfg.limits.max_arena_size) {
      return ResourceExhaustedError(StrCat("arena of ", request.arena_size(),
                                           " bytes exceeds limits.max_arena_size ",
                                           cfg.limits.max_arena_size));
    }
    TW_RETURN_IF_ERROR(protocol::CheckArenaFd(fds[0].get(), request.arena_size()));
    // Mapped without touching: the client pre-faulted it and its cgroup owns the pages.
    TW_ASSIGN_OR_RETURN(session.arena,
                        protocol::Arena::Map(fds[0].get(), request.arena_size(), false));
  }
  pb::HelloResponse resp;
  TW_RETURN_IF_ERROR(Declare(session, request.namespaces(), resp.mutable_namespace_digests()));
  session.version = hi;
  session.client_name = request.client_name();
  resp.set_version(hi);
  resp.set_server_version(std::string(ServerVersion()));
  resp.set_tenant(session.tenant);
  resp.set_session_id(session.id);
  resp.set_lease_duration_us(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(cfg.leases.duration).count()));
  pb::ConnectionLimits* l = resp.mutable_limits();
  l->set_max_inflight(cfg.limits.max_inflight_per_client);
  l->set_max_batch(cfg.limits.max_batch);
  l->set_max_frame_size(cfg.limits.max_frame_size);
  l->set_max_value_size(cfg.limits.max_value_size);
  l->set_max_arena_size(cfg.limits.max_arena_size);
  l->set_max_leases(cfg.leases.max_per_client);
  l->set_max_leased_bytes(cfg.leases.max_bytes_per_client);
  l->set_max_namespaces(protocol::MessageLimits().max_namespaces);
  return resp;
}

StatusOr<pb::LookupResponse> Service::Lookup(Session& s, const pb::LookupRequest& r,
                                             store::Deadline deadline) {
  // Every chain's namespace must be declared before anything is looked up.
  for (const auto& item : r.items()) {
    for (const auto& chain : item.chains()) {
      if (!s.Declares(protocol::KeyFromBytes(chain.namespace_digest()))) {
        TW_RETURN_IF_ERROR(Declared(s, chain.namespace_digest()).status());
      }
    }
  }
  const bool multi_tenant = !config()->tenants.empty();
  // Keys in the client's arena are read in place unless the tenant check or a lease depends
  // on them: the client could change them between the lookup and the Peek below (to learn
  // whether another tenant's chunk is stored, or to lease more bytes than it is charged).
  const protocol::ArenaKeys arena_keys =
      multi_tenant || r.take_lease() ? protocol::ArenaKeys::kCopy : protocol::ArenaKeys::kInPlace;
  const std::span<const uint8_t> arena(s.arena.data(), s.arena.size());
  std::vector<Key> scratch;  // keys copied: one field per key (version 1), or from the arena
  pb::LookupResponse resp;
  uint64_t found = 0, missing = 0;
  for (const auto& item : r.items()) {
    pb::LookupResult* out = resp.add_results();
    if (Clock::now() >= deadline) {
      out->set_miss(pb::MISS_REASON_DEADLINE);
      for (int c = 0; c < item.chains_size(); ++c) out->add_chains();
      continue;
    }
    struct ChainOut {
      store::LookupResult result;
      uint64_t value_size = 0;
    };
    std::vector<ChainOut> chains;
    size_t prefix = SIZE_MAX;
    store::MissReason miss = store::MissReason::kNone;
    for (const auto& chain : item.chains()) {
      const std::span<const Key> keys = protocol::ChainKeysView(chain, arena, arena_keys, &scratch);
      ChainOut co;
      co.result = store_->Lookup(keys, r.take_lease());
      // With tenants, the deepest hit must be stored under the chain's namespace: a key of
      // another namespace (another tenant's) reads as absent, so lookups are no oracle for
      // other tenants' prompts. (Without tenants every client may use every namespace.) A
      // lease also needs the chunk size for the per-uid byte cap. The index answers both
      // (Peek: no I/O, so this stays fit for the reactor); the size is the stored record's,
      // a little above the value's.
      if (co.result.prefix > 0 && (multi_tenant || r.take_lease())) {
        auto peek = store_->Peek(keys[co.result.prefix - 1]);
        if (!peek || peek->namespace_digest != protocol::KeyFromBytes(chain.namespace_digest())) {
          if (co.result.lease != 0) store_->ReleaseLease(co.result.lease);
          co.result = store::LookupResult{};
          co.result.miss = store::MissReason::kAbsent;
        } else {
          co.value_size = peek->record_bytes;
        }
      }
      if (co.result.prefix < keys.size() && co.result.prefix < prefix) {
        miss = co.result.miss == store::MissReason::kNone ? store::MissReason::kAbsent
                                                          : co.result.miss;
      }
      prefix = std::min(prefix, co.result.prefix);
      chains.push_back(std::move(co));
    }
    if (prefix == SIZE_MAX) prefix = 0;
    out->set_prefix(static_cast<uint32_t>(prefix));
    out->set_miss(ToProto(miss));
    std::vector<LeaseTable::Part> parts;
    uint64_t bytes = 0;
    for (int c = 0; c < item.chains_size(); ++c) {
      pb::ChainTiers* tiers = out->add_chains();
      const size_t n = std::min(prefix, chains[c].result.tiers.size());
      if (s.version >= protocol::kPackedKeysVersion) {
        // Version 2: one byte per chunk, filled in place.
        std::string* packed = tiers->mutable_packed_tiers();
        packed->resize(n);
        for (size_t j = 0; j < n; ++j) {
          (*packed)[j] = static_cast<char>(ToProto(chains[c].result.tiers[j]));
        }
      } else {
        for (size_t j = 0; j < n; ++j) tiers->add_tiers(ToProto(chains[c].result.tiers[j]));
      }
      found += prefix;
      missing += protocol::ChainLength(item.chains(c)) - prefix;
      if (chains[c].result.lease != 0) {
        parts.push_back(
            {protocol::KeyFromBytes(item.chains(c).namespace_digest()), chains[c].result.lease});
        bytes += chains[c].value_size * prefix;
      }
    }
    if (r.take_lease() && prefix > 0 && !parts.empty()) {
      auto id = leases_.Add(s.peer.uid, bytes, std::move(parts), Clock::now());
      if (id) {
        out->set_lease(*id);
      } else {
        TW_LOG(kDebug, "lease cap reached", {{"session", s.id}, {"uid", s.peer.uid}});
      }
    } else {
      for (const auto& p : parts) store_->ReleaseLease(p.store_lease);
    }
  }
  ServiceMetrics::Get().LookupChunks(found, missing);
  return resp;
}

StatusOr<pb::GetResponse> Service::GetChunks(Session& s, const pb::GetRequest& r,
                                             store::Deadline deadline) {
  struct Plan {
    Key key;
    Key ns;
    DeclaredNamespace declared;
    std::vector<store::ScatterEntry> entries;  // empty: the whole value
    uint64_t lease = 0;
  };
  std::vector<Plan> plans(r.items_size());
  // Phase 1: every item's namespace must be declared before anything moves. (Arena bounds
  // were checked when the request was decoded.)
  for (int i = 0; i < r.items_size(); ++i) {
    const pb::GetItem& item = r.items(i);
    Plan& p = plans[i];
    TW_ASSIGN_OR_RETURN(p.declared, Declared(s, item.ref().namespace_digest()));
    p.key = protocol::KeyFromBytes(item.ref().key());
    p.ns = protocol::KeyFromBytes(item.ref().namespace_digest());
    p.lease = item.lease();
    for (const pb::ScatterEntry& se : item.ranges()) {
      p.entries.push_back(
          {se.segment(), se.offset(), se.length(), s.arena.data() + se.arena_offset()});
    }
  }
  // Phase 2: copy. The store checks the namespace (another namespace's chunk reads as
  // absent) and the ranges against the record header it reads anyway, so a get costs no
  // metadata read of its own. Store::Get returns only after every write into the arena is
  // done, even on a deadline miss, so replying afterwards never races a late write.
  pb::GetResponse resp;
  for (int i = 0; i < r.items_size(); ++i) {
    const pb::GetItem& item = r.items(i);
    Plan& p = plans[i];
    pb::GetResult* out = resp.add_results();
    if (Clock::now() >= deadline) {
      out->set_miss(ToProto(store::MissReason::kDeadline));
      ServiceMetrics::Get().GetMiss(store::MissReason::kDeadline, p.ns);
      continue;
    }
    store::GetOptions o;
    o.deadline = deadline;
    o.lease = p.lease != 0 ? leases_.Resolve(p.lease, s.peer.uid, p.ns, Clock::now()) : 0;
    o.namespace_digest = p.ns;
    if (p.entries.empty()) {
      o.whole_chunk = true;
      o.dest = s.arena.data() + item.arena_offset();
      o.capacity = item.arena_length();
    }
    store::GetResult g = store_->Get(p.key, p.entries, o);
    if (!g.error.ok()) {
      // A range outside the stored value, or a whole value larger than arena_length: the
      // request is malformed for what is stored. Items before it may have been copied into
      // their own destinations; nothing else was touched.
      return InvalidArgumentError(StrCat("get.items[", i, "]: ", g.error.message()));
    }
    out->set_tier(ToProto(g.tier));
    out->set_miss(ToProto(g.miss));
    out->set_bytes(g.bytes);
    if (g.miss == store::MissReason::kNone) {
      for (uint64_t sz : g.segment_sizes) out->add_segment_sizes(sz);
      ServiceMetrics::Get().GetHit(g.tier, p.ns, g.bytes, p.declared.chunk_tokens);
    } else {
      ServiceMetrics::Get().GetMiss(g.miss, p.ns);
    }
  }
  return resp;
}

bool Service::CanRunInline(protocol::Opcode op,
                           const google::protobuf::MessageLite& request) const {
  if (op == Opcode::kPing) return true;
  if (op != Opcode::kLookup) return false;
  // A lookup never waits for I/O (the index, leases and the tenant check are memory), but a
  // huge one would hold up every other connection: those go to a worker.
  size_t keys = 0;
  for (const auto& item : static_cast<const pb::LookupRequest&>(request).items()) {
    for (const auto& chain : item.chains()) keys += protocol::ChainLength(chain);
  }
  return keys <= kInlineLookupKeys;
}

void Service::OnPutQueued(const pb::PutRequest& request) {
  std::lock_guard lock(pending_mu_);
  for (const auto& item : request.items()) {
    if (item.ref().key().size() != 32 || item.ref().namespace_digest().size() != 32) continue;
    auto& slot = pending_puts_[protocol::KeyFromBytes(item.ref().key())];
    slot.first = protocol::KeyFromBytes(item.ref().namespace_digest());
    slot.second += 1;
  }
}

void Service::OnPutDone(const pb::PutRequest& request) {
  std::lock_guard lock(pending_mu_);
  for (const auto& item : request.items()) {
    if (item.ref().key().size() != 32) continue;
    auto it = pending_puts_.find(protocol::KeyFromBytes(item.ref().key()));
    if (it != pending_puts_.end() && --it->second.second <= 0) pending_puts_.erase(it);
  }
}

StatusOr<pb::PutResponse> Service::Put(Session& s, const pb::PutRequest& r,
                                       store::Deadline deadline) {
  std::vector<DeclaredNamespace> declared;
  for (const auto& item : r.items()) {
    TW_ASSIGN_OR_RETURN(auto d, Declared(s, item.ref().namespace_digest()));
    declared.push_back(std::move(d));
  }
  const config::Durability default_durability = config()->default_durability;
  pb::PutResponse resp;
  for (int i = 0; i < r.items_size(); ++i) {
    const pb::PutItem& item = r.items(i);
    pb::PutItemResult* out = resp.add_results();
    const Key key = protocol::KeyFromBytes(item.ref().key());
    const Key ns = protocol::KeyFromBytes(item.ref().namespace_digest());
    const Key parent = protocol::KeyFromBytes(item.parent());
    auto invalid = [&](std::string msg) {
      out->set_result(pb::PUT_RESULT_INVALID);
      out->set_message(std::move(msg));
      ServiceMetrics::Get().PutResult("invalid", ns, 0);
      TW_LOG(kWarn, "put rejected",
             {{"session", s.id}, {"uid", s.peer.uid}, {"key", key.Hex()}, {"why", out->message()}});
    };
    if (static_cast<uint32_t>(item.tokens_size()) != declared[i].chunk_tokens) {
      invalid(StrCat("chunk has ", item.tokens_size(),
                     " token ids, the namespace's chunk_tokens is ", declared[i].chunk_tokens));
      continue;
    }
    std::vector<uint32_t> tokens(item.tokens().begin(), item.tokens().end());
    const Key computed =
        ChunkKey(parent,
                 std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(item.extra().data()),
                                          item.extra().size()),
                 tokens);
    if (computed != key) {
      invalid(StrCat("key does not match ChunkKey(parent, extra, tokens) = ", computed.Hex()));
      continue;
    }
    bool parent_ok = parent == ns;
    for (int j = 0; j < i && !parent_ok; ++j) {
      parent_ok = r.items(j).ref().key() == item.parent() &&
                  r.items(j).ref().namespace_digest() == item.ref().namespace_digest();
    }
    if (!parent_ok) {
      std::lock_guard lock(pending_mu_);
      auto it = pending_puts_.find(parent);
      parent_ok = it != pending_puts_.end() && it->second.first == ns;
    }
    if (!parent_ok) {
      auto peek = store_->Peek(parent);
      parent_ok = peek && peek->namespace_digest == ns;
    }
    if (!parent_ok) {
      invalid("parent is neither the namespace nor a chunk of this namespace");
      continue;
    }
    if (Clock::now() >= deadline) {
      out->set_result(pb::PUT_RESULT_BUSY);
      ServiceMetrics::Get().PutResult("busy", ns, 0);
      continue;
    }
    store::PutRequest req;
    req.chunk.key = key;
    req.chunk.namespace_digest = ns;
    req.chunk.parent = parent;
    req.chunk.extra = item.extra();
    req.chunk.tokens = std::move(tokens);
    req.chunk.segment_sizes.assign(item.segment_sizes().begin(), item.segment_sizes().end());
    uint64_t bytes = 0;
    for (const auto& e : item.ranges()) {
      req.data.push_back({e.segment(), e.offset(), e.length(), s.arena.data() + e.arena_offset()});
      bytes += e.length();
    }
    req.durability = item.durability() == pb::DURABILITY_DISK     ? config::Durability::kDisk
                     : item.durability() == pb::DURABILITY_MEMORY ? config::Durability::kMemory
                                                                  : default_durability;
    req.deadline = deadline;
    const store::PutResult result = store_->Put(req);
    out->set_result(ToProto(result));
    ServiceMetrics::Get().PutResult(PutName(result), ns, bytes);
  }
  return resp;
}

StatusOr<pb::ExistsResponse> Service::Exists(Session& s, const pb::ExistsRequest& r) {
  for (const auto& ref : r.items())
    TW_RETURN_IF_ERROR(Declared(s, ref.namespace_digest()).status());
  pb::ExistsResponse resp;
  for (const auto& ref : r.items()) {
    pb::ExistsResult* out = resp.add_results();
    auto meta = store_->Stat(protocol::KeyFromBytes(ref.key()));
    if (!meta || meta->info.namespace_digest != protocol::KeyFromBytes(ref.namespace_digest())) {
      continue;
    }
    out->set_exists(true);
    out->set_tier(ToProto(meta->tier));
    out->set_value_size(meta->value_size);
    for (uint64_t sz : meta->info.segment_sizes) out->add_segment_sizes(sz);
  }
  return resp;
}

StatusOr<pb::DeleteResponse> Service::Delete(Session& s, const pb::DeleteRequest& r) {
  for (const auto& ref : r.items())
    TW_RETURN_IF_ERROR(Declared(s, ref.namespace_digest()).status());
  // Only chunks of the item's namespace are deleted; those go to the store in one batch, so
  // their tombstones share syncs.
  std::vector<Key> keys;
  std::vector<int> item_of;
  for (int i = 0; i < r.items_size(); ++i) {
    const Key key = protocol::KeyFromBytes(r.items(i).key());
    auto peek = store_->Peek(key);
    if (peek && peek->namespace_digest == protocol::KeyFromBytes(r.items(i).namespace_digest())) {
      keys.push_back(key);
      item_of.push_back(i);
    }
  }
  const std::vector<bool> deleted = store_->DeleteMany(keys);
  pb::DeleteResponse resp;
  for (int i = 0; i < r.items_size(); ++i) resp.add_deleted(false);
  for (size_t k = 0; k < keys.size(); ++k) resp.set_deleted(item_of[k], deleted[k]);
  return resp;
}

pb::StatsResponse Service::Stats(Session* s) {
  const store::StoreStats st = store_->Stats();
  pb::StatsResponse resp;
  FillTier(st.dram, store::Tier::kDram, resp.add_tiers());
  FillTier(st.nvme, store::Tier::kNvme, resp.add_tiers());
  for (size_t i = 0; i < kPutResultCount; ++i) {
    (*resp.mutable_puts())[std::string(PutName(static_cast<store::PutResult>(i)))] =
        st.puts_by_result[i];
  }
  resp.set_dropped_unwritten(st.dropped_unwritten);
  resp.set_connected_clients(connected_clients.load());
  resp.set_live_leases(leases_.size());
  resp.set_server_version(std::string(ServerVersion()));
  resp.set_version(s != nullptr && s->version != 0 ? s->version : protocol::kMaxProtocolVersion);
  if (s != nullptr) {
    resp.set_arena_size(s->arena.size());
    resp.set_tenant(s->tenant);
  }
  return resp;
}

pb::NamespacesResponse Service::Namespaces() {
  pb::NamespacesResponse resp;
  std::lock_guard lock(known_mu_);
  for (const store::NamespaceUsage& u : store_->Namespaces()) {
    pb::NamespaceInfo* n = resp.add_namespaces();
    n->set_namespace_digest(std::string(u.namespace_digest.View()));
    n->set_chunks(u.chunks);
    n->set_bytes(u.bytes);
    n->set_quota(u.quota);
    auto it = known_namespaces_.find(u.namespace_digest);
    if (it != known_namespaces_.end()) {
      *n->mutable_fields() = protocol::ToProto(it->second);
      n->set_fields_known(true);
    }
  }
  return resp;
}

std::vector<std::string> Service::Export(uint64_t request_id, const pb::ExportRequest& r,
                                         const Emit& emit) {
  constexpr int kPerFrame = 1024;
  std::map<Key, Namespace> known;
  {
    std::lock_guard lock(known_mu_);
    known = known_namespaces_;
  }
  const bool filter = !r.namespace_digest().empty();
  const Key want = filter ? protocol::KeyFromBytes(r.namespace_digest()) : Key{};
  std::vector<std::string> frames;
  pb::ExportResponse page;
  uint64_t count = 0;
  bool stopped = false;
  store_->Export([&](const store::ChunkMeta& m) {
    if (filter && m.info.namespace_digest != want) return true;
    if (page.chunks_size() >= kPerFrame) {
      // A full page goes out now (streamed) or is kept (no emitter); more follow.
      std::string frame =
          protocol::EncodeReply(Opcode::kAdminExport, request_id, page, protocol::kFlagMore);
      page.Clear();
      if (emit) {
        if (!emit(std::move(frame))) {
          stopped = true;
          return false;
        }
      } else {
        frames.push_back(std::move(frame));
      }
    }
    pb::ExportedChunk* c = page.add_chunks();
    c->set_key(std::string(m.info.key.View()));
    c->set_parent(std::string(m.info.parent.View()));
    c->set_namespace_digest(std::string(m.info.namespace_digest.View()));
    auto it = known.find(m.info.namespace_digest);
    if (it != known.end()) {
      *c->mutable_fields() = protocol::ToProto(it->second);
      c->set_fields_known(true);
    }
    for (uint32_t t : m.info.tokens) c->add_tokens(t);
    c->set_extra(m.info.extra);
    c->set_value_size(m.value_size);
    c->set_tier(ToProto(m.tier));
    c->set_created_unix_ms(m.created_unix_ms);
    ++count;
    return r.max_chunks() == 0 || count < r.max_chunks();
  });
  if (stopped) return {};  // the connection is gone
  frames.push_back(protocol::EncodeReply(Opcode::kAdminExport, request_id, page));
  return frames;
}

std::vector<std::string> Service::Handle(Session& session, const protocol::FrameHeader& header,
                                         const google::protobuf::MessageLite& request,
                                         Clock::time_point received, const Emit& emit) {
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
  if (admin_op != session.admin && op != Opcode::kStats && op != Opcode::kPing) {
    ServiceMetrics::Get().ProtocolError("wrong_socket");
    return {protocol::EncodeError(
        op, id,
        PermissionDeniedError(StrCat(protocol::ToString(op), " is not served on the ",
                                     session.admin ? "admin" : "client", " socket")),
        false)};
  }
  std::vector<std::string> out;
  switch (op) {
    case Opcode::kDeclareNamespaces: {
      pb::DeclareNamespacesResponse resp;
      Status st =
          Declare(session, static_cast<const pb::DeclareNamespacesRequest&>(request).namespaces(),
                  resp.mutable_namespace_digests());
      out = st.ok() ? reply(StatusOr<pb::DeclareNamespacesResponse>(std::move(resp)))
                    : reply(StatusOr<pb::DeclareNamespacesResponse>(st));
      break;
    }
    case Opcode::kLookup: {
      const auto& r = static_cast<const pb::LookupRequest&>(request);
      out = reply(Lookup(session, r, DeadlineFrom(r.timeout_us(), received)));
      break;
    }
    case Opcode::kReleaseLeases: {
      pb::ReleaseLeasesResponse resp;
      uint32_t n = 0;
      for (uint64_t l : static_cast<const pb::ReleaseLeasesRequest&>(request).leases()) {
        n += leases_.Release(l, session.peer.uid) ? 1 : 0;
      }
      resp.set_released(n);
      out = {protocol::EncodeReply(op, id, resp)};
      break;
    }
    case Opcode::kGet: {
      const auto& r = static_cast<const pb::GetRequest&>(request);
      out = reply(GetChunks(session, r, DeadlineFrom(r.timeout_us(), received)));
      break;
    }
    case Opcode::kPut: {
      const auto& r = static_cast<const pb::PutRequest&>(request);
      out = reply(Put(session, r, DeadlineFrom(r.timeout_us(), received)));
      break;
    }
    case Opcode::kExists:
      out = reply(Exists(session, static_cast<const pb::ExistsRequest&>(request)));
      break;
    case Opcode::kDelete:
      out = reply(Delete(session, static_cast<const pb::DeleteRequest&>(request)));
      break;
    case Opcode::kStats:
      out = {protocol::EncodeReply(op, id, Stats(&session))};
      break;
    case Opcode::kPing:
      out = {protocol::EncodeReply(op, id, pb::PingResponse())};
      break;
    case Opcode::kAdminNamespaces:
      out = {protocol::EncodeReply(op, id, Namespaces())};
      break;
    case Opcode::kAdminEvictNamespace: {
      pb::EvictNamespaceResponse resp;
      const Key ns = protocol::KeyFromBytes(
          static_cast<const pb::EvictNamespaceRequest&>(request).namespace_digest());
      resp.set_evicted(store_->EvictNamespace(ns));
      TW_LOG(kInfo, "namespace evicted", {{"namespace", ns.Hex()}, {"chunks", resp.evicted()}});
      out = {protocol::EncodeReply(op, id, resp)};
      break;
    }
    case Opcode::kAdminExport:
      out = Export(id, static_cast<const pb::ExportRequest&>(request), emit);
      break;
    case Opcode::kAdminStats: {
      pb::AdminStatsResponse resp;
      *resp.mutable_stats() = Stats(nullptr);
      resp.set_metrics_text(metrics::RenderText());
      out = {protocol::EncodeReply(op, id, resp)};
      break;
    }
    case Opcode::kHello:
    case Opcode::kInvalid:
      out = {protocol::EncodeError(op, id, FailedPreconditionError("unexpected hello"), true)};
      break;
  }
  ServiceMetrics::Get().Latency(op, std::chrono::duration<double>(Clock::now() - received).count());
  return out;
}

void Service::Tick() {
  leases_.Expire(Clock::now());
  ServiceMetrics::Get().UpdateFromStore(store_->Stats());
}

}  // namespace tw::twd
