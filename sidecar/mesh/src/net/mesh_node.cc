#include "tw/mesh/mesh_node.h"

#include <map>

#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/mesh/rehome.h"
#include "tw/mesh/tcp_transport.h"

namespace tw::mesh {

namespace {

constexpr size_t kMaxHints = size_t{1} << 16;
constexpr size_t kMaxDirKeys = size_t{1} << 16;  // about 6 MiB
constexpr size_t kMaxHolderNames = 4096;

}  // namespace

MeshNode::MeshNode(Options options, ChunkSource* source, LocalChunks local)
    : opts_(std::move(options)),
      source_(source),
      local_(std::move(local)),
      watcher_(PeersWatcher::Options{opts_.peers_file, opts_.poll_interval}),
      directory_(opts_.directory) {}

StatusOr<std::unique_ptr<MeshNode>> MeshNode::Start(Options options, ChunkSource* source,
                                                    LocalChunks local) {
  if (source == nullptr || !local) {
    return InvalidArgumentError("mesh: a chunk source and the local chunk listing are required");
  }
  if (options.peers_file.empty()) return InvalidArgumentError("mesh.peers_file: must be set");
  TW_RETURN_IF_ERROR(options.directory.Validate());
  options.announcer.self = options.self;
  TW_RETURN_IF_ERROR(options.announcer.Validate());
  PeerClient::Options co;
  co.self = options.self;
  co.call_timeout = options.peer_timeout;
  co.cooloff_initial = options.cooloff_initial;
  co.cooloff_max = options.cooloff_max;
  co.tls = options.tls;
  TW_RETURN_IF_ERROR(co.Validate());

  std::unique_ptr<MeshNode> n(new MeshNode(std::move(options), source, std::move(local)));
  n->client_ = std::make_unique<PeerClient>(std::move(co));
  n->membership_ = n->watcher_.Current();
  PeerServer::ConnectHandler connect;
  if (n->opts_.make_transport) {
    TransportEnv env;
    env.self = n->opts_.self;
    env.client = n->client_.get();
    env.source = source;
    MeshNode* node = n.get();
    env.resolve_peer = [node](const std::string& name) -> std::optional<Peer> {
      auto m = node->membership();
      const Peer* p = m->Find(name);
      if (p == nullptr) return std::nullopt;
      return *p;
    };
    TW_ASSIGN_OR_RETURN(TransportParts parts, n->opts_.make_transport(env));
    if (parts.transport == nullptr) return InternalError("mesh: the transport factory made none");
    n->transport_ = std::move(parts.transport);
    connect = std::move(parts.connect);
  } else {
    n->transport_ = std::make_unique<TcpTransport>(n->client_.get());
  }
  n->placement_ = std::make_shared<const Placement>(*n->membership_);

  PeerServer::Options so;
  so.node = n->opts_.self;
  so.version = n->opts_.version;
  so.listen_address = n->opts_.listen_address;
  so.port = n->opts_.port;
  so.tls = n->opts_.tls;
  so.max_value_size = n->opts_.max_value_size;
  so.raw_wire = n->opts_.raw_wire;
  so.wire_port = n->opts_.wire_port;
  PeerServer::Handlers h;
  h.directory = &n->directory_;
  h.source = source;
  h.connect = std::move(connect);
  TW_ASSIGN_OR_RETURN(n->server_, PeerServer::Start(std::move(so), std::move(h)));

  MeshNode* self = n.get();
  n->announcer_ = std::make_unique<Announcer>(n->opts_.announcer, n->placement_,
                                              [self](const std::string& home, UpdateBatch batch) {
                                                self->SendBatch(home, std::move(batch));
                                              });
  n->announcer_->Start();
  n->subscription_ =
      n->watcher_.Subscribe([self](const PeersWatcher::Snapshot& s) { self->OnMembership(s); });
  n->maintenance_ = std::thread([self] { self->MaintenanceLoop(); });
  Status first = n->watcher_.Start();
  if (!first.ok()) {
    TW_LOG(kWarn, "mesh: peers file not readable yet; retrying",
           {{"path", n->opts_.peers_file}, {"error", first.ToString()}});
  }
  if (!n->opts_.tls.enabled()) {
    TW_LOG(kWarn,
           "mesh: the peer service is unauthenticated (no mesh.tls): any host that "
           "reaches the port can read and announce chunks",
           {{"port", n->port()}});
  }
  TW_LOG(kInfo, "mesh started",
         {{"node", n->opts_.self},
          {"port", n->port()},
          {"transport", std::string(ToString(n->transport_->kind()))},
          {"tls", n->opts_.tls.enabled()}});
  return n;
}

MeshNode::~MeshNode() { Stop(); }

void MeshNode::Stop() {
  if (stopped_) return;
  stopped_ = true;
  watcher_.Unsubscribe(subscription_);
  watcher_.Stop();
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (maintenance_.joinable()) maintenance_.join();
  if (announcer_) announcer_->Stop();  // flushes what is queued (bounded by peer_timeout)
  if (server_) server_->Stop();
}

std::shared_ptr<const Membership> MeshNode::membership() const {
  std::lock_guard lock(mu_);
  return membership_;
}

void MeshNode::OnMembership(const PeersWatcher::Snapshot& snapshot) {
  // The watcher's thread: only record it; the maintenance thread does the work.
  {
    std::lock_guard lock(mu_);
    wanted_version_ = snapshot->version();
  }
  cv_.notify_all();
}

void MeshNode::SendBatch(const std::string& home, UpdateBatch batch) {
  if (home == opts_.self) {
    directory_.Apply(batch);
    return;
  }
  auto m = membership();
  const Peer* peer = m->Find(home);
  Status st = peer == nullptr ? UnavailableError(StrCat("home ", home, " left the membership"))
                              : client_->Update(*peer, batch, Clock::now() + opts_.peer_timeout);
  if (!st.ok()) {
    std::lock_guard lock(mu_);
    stats_.announce_batches_failed++;
    TW_LOG(kDebug, "mesh: an update batch was lost (the next refresh re-sends it)",
           {{"home", home}, {"updates", batch.updates.size()}, {"error", st.ToString()}});
  }
}

void MeshNode::Reannounce(const Placement& old_placement, const Placement& new_placement) {
  std::vector<Key> keys;
  local_([&](const Key& ns, const Key& key) {
    keys.push_back(DirectoryKey(ns, key));
    return true;
  });
  std::vector<Key> todo;
  if (old_placement.size() == 0) {
    todo = std::move(keys);
  } else {
    for (auto& [node, ks] : PlanReannounce(keys, old_placement, new_placement)) {
      todo.insert(todo.end(), ks.begin(), ks.end());
    }
  }
  // Paced: a full home queue is sent from this thread before more are queued, so a large
  // store is re-announced without dropping updates.
  const size_t step = opts_.announcer.max_batch;
  for (size_t i = 0; i < todo.size(); ++i) {
    announcer_->Announce(todo[i]);
    if ((i + 1) % step == 0) announcer_->Tick();
  }
  announcer_->Tick();
  std::lock_guard lock(mu_);
  stats_.reannounced += todo.size();
}

void MeshNode::MaintenanceLoop() {
  auto next_refresh = Clock::now() + opts_.refresh_interval;
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_until(lock, next_refresh,
                   [&] { return stop_ || wanted_version_ != handled_version_; });
    if (stop_) break;
    if (wanted_version_ != handled_version_) {
      const uint64_t target = wanted_version_;
      lock.unlock();
      auto snapshot = watcher_.Current();
      auto placement = std::make_shared<const Placement>(*snapshot);
      std::shared_ptr<const Membership> old_membership;
      std::shared_ptr<const Placement> old_placement;
      {
        std::lock_guard l(mu_);
        old_membership = membership_;
        old_placement = placement_;
        membership_ = snapshot;
        placement_ = placement;
        ++placement_generation_;
        stats_.membership_version = snapshot->version();
        stats_.peers = snapshot->size();
      }
      announcer_->SetPlacement(placement);
      for (const Peer& p : old_membership->peers()) {
        if (!snapshot->Contains(p.node)) directory_.ForgetNode(p.node);
      }
      if (!snapshot->Contains(opts_.self)) {
        TW_LOG(kWarn, "mesh: this node is not in the peers file; it asks peers but is no home",
               {{"node", opts_.self}, {"path", opts_.peers_file}});
      }
      Reannounce(*old_placement, *placement);
      TW_LOG(kInfo, "mesh: membership changed",
             {{"version", snapshot->version()}, {"peers", snapshot->size()}});
      lock.lock();
      handled_version_ = target;
      cv_.notify_all();
      continue;
    }
    if (Clock::now() >= next_refresh) {
      lock.unlock();
      directory_.Expire();
      auto p = std::make_shared<const Placement>(Membership::Create({}, 0).value());
      Placement current = [&] {
        std::lock_guard l(mu_);
        return *placement_;
      }();
      Reannounce(*p, current);
      next_refresh = Clock::now() + opts_.refresh_interval;
      lock.lock();
    }
  }
}

void MeshNode::Sync() {
  const uint64_t version = watcher_.Current()->version();
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return stop_ || handled_version_ >= version; });
  }
  announcer_->Flush();
}

std::vector<MeshNode::Located> MeshNode::LocateRemote(std::span<const FetchSpec> chunks,
                                                      Deadline deadline) {
  std::vector<Located> out(chunks.size());
  std::shared_ptr<const Membership> m;
  std::shared_ptr<const Placement> placement;
  uint64_t generation = 0;
  {
    std::lock_guard lock(mu_);
    m = membership_;
    placement = placement_;
    generation = placement_generation_;
  }
  if (placement->size() == 0 || chunks.empty()) return out;
  // Directory keys and homes (cached per chunk key), then the keys grouped by home: a chain's
  // keys spread over few homes, so a short list beats a map.
  std::vector<Key> dir_keys(chunks.size());
  std::vector<uint32_t> homes(chunks.size());
  DirectoryKeys(chunks, *placement, generation, dir_keys, homes);
  struct Group {
    uint32_t home = 0;
    std::vector<Key> keys;
    std::vector<uint32_t> items;
  };
  std::vector<Group> groups;
  for (size_t i = 0; i < chunks.size(); ++i) {
    Group* g = nullptr;
    for (Group& x : groups) {
      if (x.home == homes[i]) g = &x;
    }
    if (g == nullptr) {
      g = &groups.emplace_back();
      g->home = homes[i];
      g->keys.reserve(chunks.size());
      g->items.reserve(chunks.size());
    }
    g->keys.push_back(dir_keys[i]);
    g->items.push_back(static_cast<uint32_t>(i));
  }
  std::vector<PeerClient::LocateCall> calls;
  std::vector<const Group*> call_groups;
  std::vector<const Group*> local;
  for (const Group& g : groups) {
    const std::string& name = placement->nodes()[g.home];
    if (name == opts_.self) {
      local.push_back(&g);
      continue;
    }
    calls.push_back({m->Find(name), g.keys});
    call_groups.push_back(&g);
  }
  // The most recent holder that is another member and not cooling off after a failure; when
  // the only holders are cooling off, the chunk is unreachable rather than promised. An answer
  // names few holders: each one's standing is settled once per answer, not per key.
  enum Standing : uint8_t { kUnknown, kSkip, kCooling, kUsable };
  std::vector<std::pair<Key, uint32_t>> hints;  // chunk key → holder id
  hints.reserve(chunks.size());
  std::vector<Standing> standing;
  std::vector<uint32_t> ids;  // holder id of each name of the answer
  auto pick_all = [&](const Group& g, const PeerClient::Holders& h) {
    standing.assign(h.names.size(), kUnknown);
    ids.assign(h.names.size(), 0);
    for (size_t k = 0; k < g.items.size(); ++k) {
      const uint32_t item = g.items[k];
      for (uint32_t j = h.offsets[k]; j < h.offsets[k + 1]; ++j) {
        const uint32_t n = h.index[j];
        if (standing[n] == kUnknown) {
          const std::string& name = h.names[n];
          standing[n] = name == opts_.self || !m->Contains(name) ? kSkip
                        : client_->CoolingOff(name)              ? kCooling
                                                                 : kUsable;
          if (standing[n] == kUsable) ids[n] = HolderId(name);
        }
        if (standing[n] == kSkip) continue;
        if (standing[n] == kCooling) {
          out[item].miss = MissReason::kPeerUnreachable;
          continue;
        }
        out[item].holder = h.names[n];
        out[item].miss = MissReason::kNone;
        hints.emplace_back(chunks[item].key, ids[n]);
        break;
      }
    }
  };
  // The remote homes at once; the local home's directory meanwhile costs nothing to wait for.
  std::vector<StatusOr<PeerClient::Holders>> answers;
  if (!calls.empty()) answers = client_->LocateMany(calls, deadline);
  for (const Group* g : local) {
    Directory::Packed p;
    directory_.LookupPacked(g->keys, &p);
    PeerClient::Holders h;
    h.names = std::move(p.nodes);
    h.offsets = std::move(p.offsets);
    h.index = std::move(p.holders);
    pick_all(*g, h);
  }
  uint64_t unreachable = 0, found = 0;
  for (size_t c = 0; c < calls.size(); ++c) {
    const Group& g = *call_groups[c];
    if (!answers[c].ok()) {
      for (uint32_t i : g.items) out[i].miss = MissReason::kPeerUnreachable;
      unreachable += g.items.size();
      continue;
    }
    pick_all(g, *answers[c]);
  }
  for (const Located& l : out) found += l.miss == MissReason::kNone ? 1 : 0;
  RememberHolders(hints);
  std::lock_guard lock(mu_);
  stats_.locate_keys += chunks.size();
  stats_.locate_found += found;
  stats_.locate_unreachable += unreachable;
  return out;
}

FetchResult MeshNode::Fetch(const std::string& holder, const FetchSpec& spec,
                            std::span<std::byte> dest, Deadline deadline) {
  auto m = membership();
  const Peer* peer = m->Find(holder);
  if (peer == nullptr) {
    FetchResult r;
    r.miss = MissReason::kPeerUnreachable;
    r.error = UnavailableError(StrCat("holder ", holder, " is not in the peers file"));
    return r;
  }
  FetchResult r = transport_->Fetch(*peer, spec, dest, deadline);
  if (r.miss == MissReason::kAbsent || r.miss == MissReason::kEvicted) ForgetHolder(spec.key);
  return r;
}

FetchResult MeshNode::FetchAny(const FetchSpec& spec, std::span<std::byte> dest, Deadline deadline,
                               std::string* holder) {
  std::string h;
  {
    std::lock_guard lock(hints_mu_);
    auto it = hints_.find(spec.key);
    if (it != hints_.end() && it->second < holder_names_.size()) h = holder_names_[it->second];
  }
  if (h.empty()) {
    const Located l = LocateRemote(std::span<const FetchSpec>(&spec, 1), deadline)[0];
    if (l.miss != MissReason::kNone) {
      FetchResult r;
      r.miss = l.miss;
      r.error = NotFoundError("no peer holds the chunk");
      return r;
    }
    h = l.holder;
  }
  if (holder != nullptr) *holder = h;
  return Fetch(h, spec, dest, deadline);
}

void MeshNode::DirectoryKeys(std::span<const FetchSpec> chunks, const Placement& placement,
                             uint64_t generation, std::span<Key> dir_keys,
                             std::span<uint32_t> homes) {
  std::vector<uint32_t> missing;
  {
    std::lock_guard lock(dir_keys_mu_);
    for (size_t i = 0; i < chunks.size(); ++i) {
      auto it = dir_keys_.find(chunks[i].key);
      if (it == dir_keys_.end() || it->second.namespace_digest != chunks[i].namespace_digest) {
        missing.push_back(static_cast<uint32_t>(i));
        continue;
      }
      CachedDirKey& c = it->second;
      dir_keys[i] = c.dir_key;
      if (c.generation != generation) {
        c.home = static_cast<uint32_t>(placement.HomeIndex(c.dir_key));
        c.generation = generation;
      }
      homes[i] = c.home;
    }
  }
  if (missing.empty()) return;
  for (uint32_t i : missing) {
    dir_keys[i] = DirectoryKey(chunks[i].namespace_digest, chunks[i].key);
    homes[i] = static_cast<uint32_t>(placement.HomeIndex(dir_keys[i]));
  }
  std::lock_guard lock(dir_keys_mu_);
  for (uint32_t i : missing) {
    if (dir_keys_.size() >= kMaxDirKeys) dir_keys_.clear();
    dir_keys_[chunks[i].key] = {chunks[i].namespace_digest, dir_keys[i], homes[i], generation};
  }
}

uint32_t MeshNode::HolderId(const std::string& node) {
  std::lock_guard lock(hints_mu_);
  for (uint32_t i = 0; i < holder_names_.size(); ++i) {
    if (holder_names_[i] == node) return i;
  }
  if (holder_names_.size() >= kMaxHolderNames) {
    // Names of nodes long gone: start over (the hints naming them go too).
    holder_names_.clear();
    hints_.clear();
  }
  holder_names_.push_back(node);
  return static_cast<uint32_t>(holder_names_.size() - 1);
}

void MeshNode::RememberHolders(std::span<const std::pair<Key, uint32_t>> hints) {
  if (hints.empty()) return;
  std::lock_guard lock(hints_mu_);
  for (const auto& [key, holder] : hints) {
    if (holder >= holder_names_.size()) continue;  // the names started over meanwhile
    if (hints_.size() >= kMaxHints) hints_.clear();
    hints_[key] = holder;
  }
}

void MeshNode::ForgetHolder(const Key& key) {
  std::lock_guard lock(hints_mu_);
  hints_.erase(key);
}

void MeshNode::OnStored(const FetchSpec& chunk) {
  announcer_->Announce(DirectoryKey(chunk.namespace_digest, chunk.key));
}

void MeshNode::OnRemoved(const FetchSpec& chunk) {
  announcer_->Withdraw(DirectoryKey(chunk.namespace_digest, chunk.key));
}

std::vector<LinkStats> MeshNode::Links() const {
  std::map<std::string, LinkStats> by_node;
  for (const Peer& p : membership()->peers()) {
    if (p.node == opts_.self) continue;
    LinkStats l;
    l.node = p.node;
    l.kind = transport_->kind();  // until the transport has talked to it
    by_node[p.node] = l;
  }
  for (LinkStats& l : transport_->Links()) {
    std::string node = l.node;
    by_node[node] = std::move(l);
  }
  for (const auto& s : server_->GetServed()) {
    LinkStats& l = by_node[s.node];
    l.node = s.node;
    l.bytes_out += s.bytes;
  }
  std::vector<LinkStats> out;
  for (auto& [node, l] : by_node) {
    out.push_back(std::move(l));
  }
  return out;
}

MeshNode::Stats MeshNode::GetStats() const {
  Stats s;
  {
    std::lock_guard lock(mu_);
    s = stats_;
  }
  s.announcer = announcer_->GetStats();
  s.client = client_->GetStats();
  s.directory = directory_.GetStats();
  return s;
}

}  // namespace tw::mesh
