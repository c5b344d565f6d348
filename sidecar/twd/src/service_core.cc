#include "service_core.h"

#include <algorithm>

#include "service_metrics.h"
#include "tw/common/log.h"
#include "tw/common/metrics.h"
#include "tw/common/strings.h"
#include "tw/protocol/frame.h"

namespace tw::twd {

std::string ServerVersion() {
  return StrCat("twd 0.1.0 (protocol ", protocol::kMinProtocolVersion, "-",
                protocol::kMaxProtocolVersion, ")");
}

ServiceCore::ServiceCore(const config::Config& config, store::Store* store,
                         std::unique_ptr<NamespaceRegistry> registry)
    : store_(store), leases_(store), registry_(std::move(registry)) {
  if (!registry_) registry_ = std::move(*NamespaceRegistry::Open("", kMaxKnownNamespaces));
  Reconfigure(config);
}

void ServiceCore::Reconfigure(const config::Config& config) {
  {
    std::lock_guard lock(mu_);
    config_ = std::make_shared<const config::Config>(config);
  }
  leases_.SetLimits(
      {config.leases.duration, config.leases.max_per_client, config.leases.max_bytes_per_client});
  ServiceMetrics::Get().SetMaxNamespaceLabels(config.metrics.max_namespace_labels);
}

std::shared_ptr<const config::Config> ServiceCore::config() const {
  std::lock_guard lock(mu_);
  return config_;
}

StatusOr<std::string> ServiceCore::TenantOf(const PeerCredentials& peer) const {
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

StatusOr<std::pair<Key, DeclaredNamespace>> ServiceCore::CheckNamespace(const Session& session,
                                                                        const Namespace& ns) const {
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
  d.fields = ns;
  return std::make_pair(NamespaceDigest(d.fields), std::move(d));
}

StatusOr<std::vector<Key>> ServiceCore::DeclareNamespaces(Session& session,
                                                          std::span<const Namespace> list) {
  std::vector<std::pair<Key, DeclaredNamespace>> checked;
  for (size_t i = 0; i < list.size(); ++i) {
    auto d = CheckNamespace(session, list[i]);
    if (!d.ok()) return d.status().WithPrefix(StrCat("namespaces[", i, "]"));
    checked.push_back(std::move(*d));
  }
  {
    std::lock_guard lock(session.mu);
    size_t fresh = 0;
    for (const auto& [k, d] : checked) fresh += session.namespaces.contains(k) ? 0 : 1;
    if (session.namespaces.size() + fresh > kMaxNamespacesPerSession) {
      return ResourceExhaustedError("too many namespaces declared on this connection");
    }
    for (auto& [k, d] : checked) session.namespaces.emplace(k, d);
  }
  std::vector<Key> digests;
  for (const auto& [k, d] : checked) {
    registry_->Add(k, d.fields);  // bounded by kMaxKnownNamespaces
    digests.push_back(k);
  }
  return digests;
}

StatusOr<DeclaredNamespace> ServiceCore::Declared(Session& session, const Key& digest) {
  auto d = session.Find(digest);
  if (!d) {
    return PermissionDeniedError(
        StrCat("namespace ", digest.Hex().substr(0, 16), "… was not declared on this connection"));
  }
  return *d;
}

StatusOr<HelloResult> ServiceCore::Hello(Session& session, HelloRequest request) {
  const auto cfg_ptr = config();
  const config::Config& cfg = *cfg_ptr;
  const uint32_t lo = std::max(request.min_version, protocol::kMinProtocolVersion);
  const uint32_t hi = std::min(request.max_version, protocol::kMaxProtocolVersion);
  if (lo > hi) {
    return UnimplementedError(StrCat("no common protocol version: client speaks [",
                                     request.min_version, ", ", request.max_version,
                                     "], twd speaks [", protocol::kMinProtocolVersion, ", ",
                                     protocol::kMaxProtocolVersion, "]"));
  }
  TW_ASSIGN_OR_RETURN(session.tenant, TenantOf(session.peer));
  std::vector<protocol::UniqueFd>& fds = request.fds;
  if (fds.size() > 1) return InvalidArgumentError("more than one descriptor passed with hello");
  if (request.arena_size == 0) {
    if (!fds.empty()) return InvalidArgumentError("a descriptor was passed with arena_size 0");
  } else {
    if (fds.empty()) return InvalidArgumentError("arena_size given but no memfd was passed");
    if (request.arena_size > cfg.limits.max_arena_size) {
      return ResourceExhaustedError(StrCat("arena of ", request.arena_size,
                                           " bytes exceeds limits.max_arena_size ",
                                           cfg.limits.max_arena_size));
    }
    TW_RETURN_IF_ERROR(protocol::CheckArenaFd(fds[0].get(), request.arena_size));
    // Mapped without touching: the client pre-faulted it and its cgroup owns the pages.
    TW_ASSIGN_OR_RETURN(session.arena,
                        protocol::Arena::Map(fds[0].get(), request.arena_size, false));
  }
  HelloResult r;
  TW_ASSIGN_OR_RETURN(r.namespace_digests, DeclareNamespaces(session, request.namespaces));
  session.version = hi;
  session.client_name = std::move(request.client_name);
  r.version = hi;
  r.server_version = ServerVersion();
  r.tenant = session.tenant;
  r.session_id = session.id;
  r.lease_duration = std::chrono::duration_cast<std::chrono::microseconds>(cfg.leases.duration);
  r.limits.max_inflight = cfg.limits.max_inflight_per_client;
  r.limits.max_batch = cfg.limits.max_batch;
  r.limits.max_frame_size = cfg.limits.max_frame_size;
  r.limits.max_value_size = cfg.limits.max_value_size;
  r.limits.max_arena_size = cfg.limits.max_arena_size;
  r.limits.max_leases = cfg.leases.max_per_client;
  r.limits.max_leased_bytes = cfg.leases.max_bytes_per_client;
  r.limits.max_namespaces = kMaxNamespacesPerSession;
  return r;
}

bool ServiceCore::LookupNeedsStableKeys(bool take_lease) const {
  return take_lease || !config()->tenants.empty();
}

StatusOr<std::vector<LookupItemResult>> ServiceCore::Lookup(Session& s, const LookupRequest& r) {
  // Every chain's namespace must be declared before anything is looked up.
  for (const LookupItem& item : r.items) {
    for (const LookupChain& chain : item.chains) {
      if (!s.Declares(chain.namespace_digest)) {
        TW_RETURN_IF_ERROR(Declared(s, chain.namespace_digest).status());
      }
    }
  }
  const bool multi_tenant = !config()->tenants.empty();
  std::vector<LookupItemResult> results(r.items.size());
  uint64_t found = 0, missing = 0;
  for (size_t i = 0; i < r.items.size(); ++i) {
    const LookupItem& item = r.items[i];
    LookupItemResult& out = results[i];
    out.tiers.resize(item.chains.size());
    if (Clock::now() >= r.deadline) {
      out.miss = MissReason::kDeadline;
      continue;
    }
    struct ChainOut {
      store::LookupResult result;
      uint64_t value_size = 0;
    };
    std::vector<ChainOut> chains;
    chains.reserve(item.chains.size());
    size_t prefix = SIZE_MAX;
    MissReason miss = MissReason::kNone;
    for (const LookupChain& chain : item.chains) {
      ChainOut co;
      co.result = store_->Lookup(chain.keys, r.take_lease);
      // With tenants, the deepest hit must be stored under the chain's namespace: a key of
      // another namespace (another tenant's) reads as absent, so lookups are no oracle for
      // other tenants' prompts. (Without tenants every client may use every namespace.) A
      // lease also needs the chunk size for the per-uid byte cap. The index answers both
      // (Peek: no I/O, so this stays fit for the reactor); the size is the stored record's,
      // a little above the value's.
      if (co.result.prefix > 0 && (multi_tenant || r.take_lease)) {
        auto peek = store_->Peek(chain.keys[co.result.prefix - 1]);
        if (!peek || peek->namespace_digest != chain.namespace_digest) {
          if (co.result.lease != 0) store_->ReleaseLease(co.result.lease);
          co.result = store::LookupResult{};
          co.result.miss = MissReason::kAbsent;
        } else {
          co.value_size = peek->record_bytes;
        }
      }
      if (co.result.prefix < chain.keys.size() && co.result.prefix < prefix) {
        miss = co.result.miss == MissReason::kNone ? MissReason::kAbsent : co.result.miss;
      }
      prefix = std::min(prefix, co.result.prefix);
      chains.push_back(std::move(co));
    }
    if (prefix == SIZE_MAX) prefix = 0;
    out.prefix = prefix;
    out.miss = miss;
    std::vector<LeaseTable::Part> parts;
    uint64_t bytes = 0;
    for (size_t c = 0; c < item.chains.size(); ++c) {
      auto& tiers = chains[c].result.tiers;
      if (tiers.size() <= prefix) {
        out.tiers[c] = std::move(tiers);  // the common case (one chain, or all equally deep)
      } else {
        out.tiers[c].assign(tiers.begin(), tiers.begin() + static_cast<ptrdiff_t>(prefix));
      }
      if (chains[c].result.lease != 0) {
        parts.push_back({item.chains[c].namespace_digest, chains[c].result.lease});
        bytes += chains[c].value_size * prefix;
      }
    }
    if (r.take_lease && prefix > 0 && !parts.empty()) {
      auto id = leases_.Add(s.peer.uid, bytes, std::move(parts), Clock::now());
      if (id) {
        out.lease = *id;
      } else {
        TW_LOG(kDebug, "lease cap reached", {{"session", s.id}, {"uid", s.peer.uid}});
      }
    } else {
      for (const auto& p : parts) store_->ReleaseLease(p.store_lease);
    }
    // The local prefix ended on a chunk this node does not have: other nodes may.
    if (remote_ != nullptr && (miss == MissReason::kAbsent || miss == MissReason::kEvicted)) {
      // Chains stored deeper here than the common prefix keep their local chunks.
      std::vector<std::span<const Tier>> deeper(item.chains.size());
      for (size_t c = 0; c < item.chains.size(); ++c) {
        const auto& tiers = chains[c].result.tiers;  // intact when longer than the prefix
        if (tiers.size() > prefix) deeper[c] = std::span<const Tier>(tiers).subspan(prefix);
      }
      ExtendWithPeers(item, prefix, deeper, r.deadline, out);
    }
    for (const LookupChain& chain : item.chains) {
      found += out.prefix;
      missing += chain.keys.size() - std::min(out.prefix, chain.keys.size());
    }
  }
  ServiceMetrics::Get().LookupChunks(found, missing);
  return results;
}

uint32_t ServiceCore::ReleaseLeases(Session& session, std::span<const uint64_t> leases) {
  uint32_t n = 0;
  for (uint64_t l : leases) n += leases_.Release(l, session.peer.uid) ? 1 : 0;
  return n;
}

StatusOr<std::vector<GetItemResult>> ServiceCore::Get(Session& s, const GetRequest& r) {
  // Phase 1: every item's namespace must be declared before anything moves.
  std::vector<DeclaredNamespace> declared(r.items.size());
  for (size_t i = 0; i < r.items.size(); ++i) {
    TW_ASSIGN_OR_RETURN(declared[i], Declared(s, r.items[i].ref.namespace_digest));
  }
  // Phase 2: copy. The store checks the namespace (another namespace's chunk reads as
  // absent) and the ranges against the record header it reads anyway, so a get costs no
  // metadata read of its own. Store::Get returns only after every write into the arena is
  // done, even on a deadline miss, so replying afterwards never races a late write.
  std::vector<GetItemResult> results(r.items.size());
  std::vector<store::ScatterEntry> entries;
  for (size_t i = 0; i < r.items.size(); ++i) {
    const GetItem& item = r.items[i];
    const Key& ns = item.ref.namespace_digest;
    GetItemResult& out = results[i];
    if (Clock::now() >= r.deadline) {
      out.miss = MissReason::kDeadline;
      CountGetMiss(MissReason::kDeadline, ns);
      continue;
    }
    entries.clear();
    for (const ArenaRange& e : item.ranges) {
      entries.push_back({e.segment, e.offset, e.length, s.arena.data() + e.arena_offset});
    }
    store::GetOptions o;
    o.deadline = r.deadline;
    o.lease = item.lease != 0 ? leases_.Resolve(item.lease, s.peer.uid, ns, Clock::now()) : 0;
    o.namespace_digest = ns;
    if (entries.empty()) {
      o.whole_chunk = true;
      o.dest = s.arena.data() + item.arena_offset;
      o.capacity = item.arena_length;
    }
    store::GetResult g = store_->Get(item.ref.key, entries, o);
    if (remote_ != nullptr && (g.miss == MissReason::kAbsent || g.miss == MissReason::kEvicted)) {
      out.miss = g.miss;
      auto served = GetFromPeer(s, item, r.deadline, out);
      if (!served.ok()) return served.status().WithPrefix(StrCat("get.items[", i, "]"));
      if (*served) {
        get_hits_.fetch_add(1, std::memory_order_relaxed);
        ServiceMetrics::Get().GetHit(Tier::kPeer, ns, out.bytes, declared[i].chunk_tokens);
      } else {
        CountGetMiss(out.miss, ns);
      }
      continue;
    }
    if (!g.error.ok()) {
      // A range outside the stored value, or a whole value larger than arena_length: the
      // request is malformed for what is stored. Items before it may have been copied into
      // their own destinations; nothing else was touched.
      return InvalidArgumentError(StrCat("get.items[", i, "]: ", g.error.message()));
    }
    out.tier = g.tier;
    out.miss = g.miss;
    out.bytes = g.bytes;
    if (g.miss == MissReason::kNone) {
      out.segment_sizes = std::move(g.segment_sizes);
      get_hits_.fetch_add(1, std::memory_order_relaxed);
      ServiceMetrics::Get().GetHit(g.tier, ns, g.bytes, declared[i].chunk_tokens);
    } else {
      CountGetMiss(g.miss, ns);
    }
  }
  return results;
}

void ServiceCore::OnPutQueued(std::span<const ChunkRef> chunks) {
  std::lock_guard lock(pending_mu_);
  for (const ChunkRef& c : chunks) {
    auto& slot = pending_puts_[c.key];
    slot.first = c.namespace_digest;
    slot.second += 1;
  }
}

void ServiceCore::OnPutDone(std::span<const ChunkRef> chunks) {
  std::lock_guard lock(pending_mu_);
  for (const ChunkRef& c : chunks) {
    auto it = pending_puts_.find(c.key);
    if (it != pending_puts_.end() && --it->second.second <= 0) pending_puts_.erase(it);
  }
}

void ServiceCore::CountGetMiss(MissReason reason, const Key& ns) {
  get_misses_[static_cast<size_t>(reason) % get_misses_.size()].fetch_add(
      1, std::memory_order_relaxed);
  ServiceMetrics::Get().GetMiss(reason, ns);
}

void ServiceCore::CountPut(PutResult result, const Key& ns, uint64_t bytes) {
  puts_[static_cast<size_t>(result)].fetch_add(1, std::memory_order_relaxed);
  ServiceMetrics::Get().PutResult(result, ns, bytes);
}

StatusOr<std::vector<PutItemResult>> ServiceCore::Put(Session& s, PutRequest& r) {
  std::vector<DeclaredNamespace> declared;
  declared.reserve(r.items.size());
  for (const PutItem& item : r.items) {
    TW_ASSIGN_OR_RETURN(auto d, Declared(s, item.ref.namespace_digest));
    declared.push_back(std::move(d));
  }
  const config::Durability default_durability = config()->default_durability;
  std::vector<PutItemResult> results(r.items.size());
  for (size_t i = 0; i < r.items.size(); ++i) {
    PutItem& item = r.items[i];
    PutItemResult& out = results[i];
    const Key& key = item.ref.key;
    const Key& ns = item.ref.namespace_digest;
    auto invalid = [&](std::string msg) {
      out.result = PutResult::kInvalid;
      out.message = std::move(msg);
      CountPut(PutResult::kInvalid, ns, 0);
      TW_LOG(kWarn, "put rejected",
             {{"session", s.id}, {"uid", s.peer.uid}, {"key", key.Hex()}, {"why", out.message}});
    };
    if (item.tokens.size() != declared[i].chunk_tokens) {
      invalid(StrCat("chunk has ", item.tokens.size(),
                     " token ids, the namespace's chunk_tokens is ", declared[i].chunk_tokens));
      continue;
    }
    const Key computed =
        ChunkKey(item.parent,
                 std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(item.extra.data()),
                                          item.extra.size()),
                 item.tokens);
    if (computed != key) {
      invalid(StrCat("key does not match ChunkKey(parent, extra, tokens) = ", computed.Hex()));
      continue;
    }
    bool parent_ok = item.parent == ns;
    for (size_t j = 0; j < i && !parent_ok; ++j) {
      parent_ok = r.items[j].ref.key == item.parent && r.items[j].ref.namespace_digest == ns;
    }
    if (!parent_ok) {
      std::lock_guard lock(pending_mu_);
      auto it = pending_puts_.find(item.parent);
      parent_ok = it != pending_puts_.end() && it->second.first == ns;
    }
    if (!parent_ok) {
      auto peek = store_->Peek(item.parent);
      parent_ok = peek && peek->namespace_digest == ns;
    }
    if (!parent_ok) {
      invalid("parent is neither the namespace nor a chunk of this namespace");
      continue;
    }
    if (Clock::now() >= r.deadline) {
      out.result = PutResult::kBusy;
      CountPut(PutResult::kBusy, ns, 0);
      continue;
    }
    store::PutRequest req;
    req.chunk.key = key;
    req.chunk.namespace_digest = ns;
    req.chunk.parent = item.parent;
    req.chunk.extra = std::move(item.extra);
    req.chunk.tokens = std::move(item.tokens);
    req.chunk.segment_sizes = item.segment_sizes;
    uint64_t bytes = 0;
    for (const ArenaRange& e : item.ranges) {
      req.data.push_back({e.segment, e.offset, e.length, s.arena.data() + e.arena_offset});
      bytes += e.length;
    }
    req.durability = item.durability == Durability::kDisk     ? config::Durability::kDisk
                     : item.durability == Durability::kMemory ? config::Durability::kMemory
                                                              : default_durability;
    req.deadline = r.deadline;
    out.result = store_->Put(req);
    CountPut(out.result, ns, bytes);
    if (remote_ != nullptr && out.result == PutResult::kStored) remote_->OnStored(item.ref);
  }
  return results;
}

StatusOr<std::vector<ExistsItemResult>> ServiceCore::Exists(Session& s,
                                                            std::span<const ChunkRef> refs) {
  for (const ChunkRef& ref : refs) TW_RETURN_IF_ERROR(Declared(s, ref.namespace_digest).status());
  std::vector<ExistsItemResult> results(refs.size());
  for (size_t i = 0; i < refs.size(); ++i) {
    auto meta = store_->Stat(refs[i].key);
    if (!meta || meta->info.namespace_digest != refs[i].namespace_digest) continue;
    results[i].exists = true;
    results[i].tier = meta->tier;
    results[i].value_size = meta->value_size;
    results[i].segment_sizes = std::move(meta->info.segment_sizes);
  }
  return results;
}

StatusOr<std::vector<bool>> ServiceCore::Delete(Session& s, std::span<const ChunkRef> refs) {
  for (const ChunkRef& ref : refs) TW_RETURN_IF_ERROR(Declared(s, ref.namespace_digest).status());
  // Only chunks of the item's namespace are deleted; those go to the store in one batch, so
  // their tombstones share syncs.
  std::vector<Key> keys;
  std::vector<size_t> item_of;
  for (size_t i = 0; i < refs.size(); ++i) {
    auto peek = store_->Peek(refs[i].key);
    if (peek && peek->namespace_digest == refs[i].namespace_digest) {
      keys.push_back(refs[i].key);
      item_of.push_back(i);
    }
  }
  const std::vector<bool> deleted = store_->DeleteMany(keys);
  std::vector<bool> out(refs.size(), false);
  for (size_t k = 0; k < keys.size(); ++k) {
    out[item_of[k]] = deleted[k];
    if (remote_ != nullptr && deleted[k]) remote_->OnRemoved(refs[item_of[k]]);
  }
  return out;
}

ServiceStats ServiceCore::Stats(const Session* s) {
  ServiceStats st;
  st.store = store_->Stats();
  for (size_t i = 0; i < kPutResultCount; ++i) st.puts_by_result[i] = puts_[i].load();
  st.get_hits = get_hits_.load();
  for (size_t i = 0; i < get_misses_.size(); ++i)
    st.get_misses_by_reason[i] = get_misses_[i].load();
  st.connected_clients = connected_clients_.load();
  st.live_leases = leases_.size();
  st.server_version = ServerVersion();
  st.gpu = gpu_status_;
  st.version = s != nullptr && s->version != 0 ? s->version : protocol::kMaxProtocolVersion;
  if (s != nullptr) {
    st.arena_size = s->arena.size();
    st.tenant = s->tenant;
  }
  return st;
}

std::vector<NamespaceListing> ServiceCore::Namespaces() {
  std::vector<NamespaceListing> out;
  const std::map<Key, Namespace> known = registry_->Snapshot();
  for (const store::NamespaceUsage& u : store_->Namespaces()) {
    NamespaceListing n;
    n.usage = u;
    auto it = known.find(u.namespace_digest);
    if (it != known.end()) {
      n.fields = it->second;
      n.fields_known = true;
    }
    out.push_back(std::move(n));
  }
  return out;
}

uint64_t ServiceCore::EvictNamespace(const Key& namespace_digest) {
  const uint64_t n = store_->EvictNamespace(namespace_digest);
  TW_LOG(kInfo, "namespace evicted", {{"namespace", namespace_digest.Hex()}, {"chunks", n}});
  return n;
}

bool ServiceCore::Export(const ExportRequest& r,
                         const std::function<bool(const ExportedChunk&)>& fn) {
  if (r.filter_key) {
    // One chunk: the index answers without a scan (twctl's key resolution).
    auto meta = store_->Stat(r.key);
    if (!meta) return true;
    if (r.filter_namespace && meta->info.namespace_digest != r.namespace_digest) return true;
    const std::optional<Namespace> fields = registry_->Find(meta->info.namespace_digest);
    return fn(ExportedChunk{&*meta, fields ? &*fields : nullptr});
  }
  const std::map<Key, Namespace> known = registry_->Snapshot();
  auto emit = [&](const store::ChunkMeta& m) {
    auto it = known.find(m.info.namespace_digest);
    return fn(ExportedChunk{&m, it != known.end() ? &it->second : nullptr});
  };
  uint64_t count = 0;
  bool stopped = false;
  store_->Export([&](const store::ChunkMeta& m) {
    if (r.filter_namespace && m.info.namespace_digest != r.namespace_digest) return true;
    if (!emit(m)) {
      stopped = true;
      return false;
    }
    ++count;
    return r.max_chunks == 0 || count < r.max_chunks;
  });
  return !stopped;
}

std::string ServiceCore::MetricsText() const { return metrics::RenderText(); }

void ServiceCore::Tick() {
  leases_.Expire(Clock::now());
  ServiceMetrics::Get().UpdateFromStore(store_->Stats());
  if (remote_ != nullptr) remote_->Tick();
}

void ServiceCore::ClientConnected() {
  connected_clients_.fetch_add(1);
  ServiceMetrics::Get().ClientsDelta(1);
}

void ServiceCore::ClientDisconnected() {
  connected_clients_.fetch_sub(1);
  ServiceMetrics::Get().ClientsDelta(-1);
}

}  // namespace tw::twd
