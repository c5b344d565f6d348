#include "misbehaving_twd.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "tw/common/strings.h"
#include "tw/protocol/fd_passing.h"
#include "tw/protocol/messages.h"

namespace tw::client::testing {

namespace pb = ::tokenwarehouse::v1;
using protocol::Opcode;

MisbehavingTwd::~MisbehavingTwd() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  for (auto& t : connections_) t.join();
  for (int fd : listen_fds_) close(fd);
  for (const auto& p : paths_) unlink(p.c_str());
}

Status MisbehavingTwd::Start(const std::string& socket_path, const std::string& admin_path) {
  path_ = socket_path;
  for (const std::string& path : {socket_path, admin_path}) {
    if (path.empty()) continue;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return ErrnoStatus(errno, "socket");
    listen_fds_.push_back(fd);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    unlink(path.c_str());
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      return ErrnoStatus(errno, "bind " + path);
    }
    paths_.push_back(path);
    if (listen(fd, 16) != 0) return ErrnoStatus(errno, "listen");
  }
  thread_ = std::thread([this] { Serve(); });
  return OkStatus();
}

size_t MisbehavingTwd::chunks() const {
  std::lock_guard<std::mutex> l(mu_);
  return store_.size();
}

std::vector<uint64_t> MisbehavingTwd::last_arena_offsets() const {
  std::lock_guard<std::mutex> l(mu_);
  return arena_offsets_;
}

void MisbehavingTwd::Serve() {
  std::vector<pollfd> fds;
  for (int fd : listen_fds_) fds.push_back(pollfd{fd, POLLIN, 0});
  while (!stop_) {
    if (poll(fds.data(), fds.size(), 50) <= 0) continue;
    for (const pollfd& p : fds) {
      if ((p.revents & POLLIN) == 0) continue;
      int fd = accept4(p.fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      connections_.emplace_back([this, fd] {
        ServeConnection(fd);
        close(fd);
      });
    }
  }
}

void MisbehavingTwd::ServeConnection(int fd) {
  std::vector<uint8_t> buf;
  std::vector<protocol::UniqueFd> fds;
  protocol::Arena arena;
  std::vector<std::string> held;  // replies kept back to answer out of order
  protocol::DecodeLimits limits;
  uint8_t chunk[1 << 16];
  auto send = [&](const std::string& frame) { protocol::SendWithFd(fd, frame, -1).IgnoreError(); };
  while (!stop_) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    auto n = protocol::RecvWithFds(fd, chunk, &fds);
    if (!n.ok() || *n == 0) return;
    buf.insert(buf.end(), chunk, chunk + *n);
    while (true) {
      auto d = protocol::DecodeFrame(std::span<const uint8_t>(buf.data(), buf.size()), limits);
      if (d.state == protocol::DecodeState::kNeedMore) break;
      if (d.state == protocol::DecodeState::kError) return;
      const uint64_t id = d.header.request_id;
      const Opcode op = d.header.opcode;
      std::string body(d.body);
      buf.erase(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(d.consumed));
      int seen = requests_seen++;
      if (hang_up_after >= 0 && seen >= hang_up_after) return;
      if (fatal_after >= 0 && seen >= fatal_after) {
        send(protocol::EncodeError(op, 0, ResourceExhaustedError("fake twd: too many clients"),
                                   true));
        return;
      }
      if (garbage_after >= 0 && seen >= garbage_after) {
        send(std::string(40, '\x7f'));
        continue;
      }
      std::string reply;
      if (op == Opcode::kHello) {
        pb::HelloRequest req;
        pb::HelloResponse resp;
        if (!req.ParseFromString(body) || fds.empty()) {
          send(protocol::EncodeError(op, id, InvalidArgumentError("bad hello"), true));
          return;
        }
        if (max_arena_size > 0 && req.arena_size() > max_arena_size) {
          send(protocol::EncodeError(
              op, id,
              ResourceExhaustedError(StrCat("arena of ", req.arena_size(),
                                            " bytes exceeds limits.max_arena_size ",
                                            max_arena_size.load())),
              true));
          return;
        }
        Status ok = protocol::CheckArenaFd(fds.back().get(), req.arena_size());
        auto mapped = ok.ok() ? protocol::Arena::Map(fds.back().get(), req.arena_size(), false)
                              : StatusOr<protocol::Arena>(ok);
        if (!mapped.ok()) {
          send(protocol::EncodeError(op, id, mapped.status(), true));
          return;
        }
        arena = std::move(*mapped);
        last_arena_size = req.arena_size();
        resp.set_version(version.load());
        resp.set_server_version("misbehaving twd");
        for (const auto& ns : req.namespaces()) {
          Namespace n = protocol::FromProto(ns);
          Key d = NamespaceDigest(n);
          resp.add_namespace_digests(std::string(d.View()));
          std::lock_guard<std::mutex> l(mu_);
          declared_[d] = n;
        }
        resp.mutable_limits()->set_max_inflight(128);
        resp.mutable_limits()->set_max_batch(1024);
        reply = protocol::EncodeReply(op, id, resp);
      } else if (op == Opcode::kPut) {
        pb::PutRequest req;
        pb::PutResponse resp;
        (void)req.ParseFromString(body);
        std::lock_guard<std::mutex> l(mu_);
        for (const auto& it : req.items()) {
          auto* r = resp.add_results();
          Key key = protocol::KeyFromBytes(it.ref().key());
          Key parent = protocol::KeyFromBytes(it.parent());
          std::vector<uint32_t> tokens(it.tokens().begin(), it.tokens().end());
          if (ChunkKey(parent,
                       {reinterpret_cast<const uint8_t*>(it.extra().data()), it.extra().size()},
                       tokens) != key) {
            r->set_result(pb::PUT_RESULT_INVALID);
            r->set_message("key does not match parent, extra and tokens");
            continue;
          }
          if (store_.count(key) != 0) {
            r->set_result(pb::PUT_RESULT_EXISTS);
            continue;
          }
          Chunk c;
          c.parent = parent;
          c.namespace_digest = protocol::KeyFromBytes(it.ref().namespace_digest());
          c.tokens = tokens;
          c.extra = it.extra();
          c.segment_sizes.assign(it.segment_sizes().begin(), it.segment_sizes().end());
          std::vector<uint64_t> starts;
          uint64_t total = 0;
          for (uint64_t s : c.segment_sizes) {
            starts.push_back(total);
            total += s;
          }
          c.value.assign(total, '\0');
          for (const auto& rg : it.ranges()) {
            std::memcpy(c.value.data() + starts.at(rg.segment()) + rg.offset(),
                        arena.data() + rg.arena_offset(), rg.length());
          }
          store_[key] = std::move(c);
          r->set_result(pb::PUT_RESULT_STORED);
        }
        reply = protocol::EncodeReply(op, id, resp);
      } else if (op == Opcode::kGet) {
        pb::GetRequest req;
        pb::GetResponse resp;
        (void)req.ParseFromString(body);
        std::lock_guard<std::mutex> l(mu_);
        for (const auto& it : req.items()) {
          auto* r = resp.add_results();
          auto found = store_.find(protocol::KeyFromBytes(it.ref().key()));
          if (found == store_.end()) {
            r->set_miss(pb::MISS_REASON_ABSENT);
            continue;
          }
          const Chunk& c = found->second;
          uint64_t bytes = 0;
          if (it.ranges().empty()) {
            if (it.arena_length() < c.value.size()) {
              r->set_miss(pb::MISS_REASON_IO_ERROR);
              continue;
            }
            std::memcpy(arena.data() + it.arena_offset(), c.value.data(), c.value.size());
            bytes = c.value.size();
          } else {
            std::vector<uint64_t> starts;
            uint64_t total = 0;
            for (uint64_t s : c.segment_sizes) {
              starts.push_back(total);
              total += s;
            }
            for (const auto& rg : it.ranges()) {
              std::memcpy(arena.data() + rg.arena_offset(),
                          c.value.data() + starts.at(rg.segment()) + rg.offset(), rg.length());
              bytes += rg.length();
            }
          }
          r->set_tier(pb::TIER_DRAM);
          r->set_bytes(bytes);
          for (uint64_t s : c.segment_sizes) r->add_segment_sizes(s);
        }
        reply = protocol::EncodeReply(op, id, resp);
      } else if (op == Opcode::kLookup) {
        pb::LookupRequest req;
        pb::LookupResponse resp;
        (void)req.ParseFromString(body);
        protocol::MessageLimits ml;
        ml.arena_size = arena.size();
        if (Status v = protocol::ValidateLookup(req, ml); !v.ok()) {
          send(protocol::EncodeError(op, id, v, false));
          continue;
        }
        std::lock_guard<std::mutex> l(mu_);
        std::vector<Key> scratch;
        std::vector<uint64_t> offsets;
        for (const auto& item : req.items()) {
          auto* r = resp.add_results();
          size_t prefix = SIZE_MAX;
          for (const auto& chain : item.chains()) {
            (chain.keys_count() != 0       ? chains_in_arena
             : chain.packed_keys().empty() ? chains_repeated
                                           : chains_packed)++;
            if (chain.keys_count() != 0) offsets.push_back(chain.keys_arena_offset());
            auto keys = protocol::ChainKeysView(chain, {arena.data(), arena.size()},
                                                protocol::ArenaKeys::kCopy, &scratch);
            size_t p = 0;
            while (p < keys.size() && store_.count(keys[p]) != 0) ++p;
            prefix = std::min(prefix, p);
          }
          if (prefix == SIZE_MAX) prefix = 0;
          r->set_prefix(static_cast<uint32_t>(prefix));
          for (int c = 0; c < item.chains_size(); ++c) {
            auto* t = r->add_chains();
            for (size_t j = 0; j < prefix; ++j) t->add_tiers(pb::TIER_DRAM);
          }
          bool all = item.chains_size() > 0 && prefix == protocol::ChainLength(item.chains(0));
          r->set_miss(all ? pb::MISS_REASON_NONE : pb::MISS_REASON_ABSENT);
          r->set_lease(req.take_lease() && prefix > 0 ? 77 : 0);
        }
        if (!offsets.empty()) arena_offsets_ = std::move(offsets);
        reply = protocol::EncodeReply(op, id, resp);
      } else if (op == Opcode::kExists || op == Opcode::kDelete) {
        pb::ExistsRequest req;  // DeleteRequest has the same shape
        (void)req.ParseFromString(body);
        std::lock_guard<std::mutex> l(mu_);
        if (op == Opcode::kExists) {
          pb::ExistsResponse resp;
          for (const auto& ref : req.items()) {
            auto it = store_.find(protocol::KeyFromBytes(ref.key()));
            auto* r = resp.add_results();
            r->set_exists(it != store_.end());
            if (it != store_.end()) {
              r->set_tier(pb::TIER_DRAM);
              r->set_value_size(it->second.value.size());
            }
          }
          reply = protocol::EncodeReply(op, id, resp);
        } else {
          pb::DeleteResponse resp;
          for (const auto& ref : req.items()) {
            resp.add_deleted(store_.erase(protocol::KeyFromBytes(ref.key())) != 0);
          }
          reply = protocol::EncodeReply(op, id, resp);
        }
      } else if (op == Opcode::kStats) {
        pb::StatsResponse resp;
        auto* t = resp.add_tiers();
        t->set_tier(pb::TIER_DRAM);
        t->set_hits(3);
        (*t->mutable_misses())["absent"] = 2;
        (*resp.mutable_puts())["stored"] = 5;
        resp.set_version(1);
        resp.set_server_version("misbehaving twd");
        resp.set_arena_size(arena.size());
        reply = protocol::EncodeReply(op, id, resp);
      } else if (op == Opcode::kAdminNamespaces) {
        pb::NamespacesResponse resp;
        std::lock_guard<std::mutex> l(mu_);
        std::map<Key, std::pair<uint64_t, uint64_t>> usage;
        for (const auto& [k, c] : store_) {
          usage[c.namespace_digest].first++;
          usage[c.namespace_digest].second += c.value.size();
        }
        for (const auto& [d, u] : usage) {
          auto* n = resp.add_namespaces();
          n->set_namespace_digest(std::string(d.View()));
          n->set_chunks(u.first);
          n->set_bytes(u.second);
          auto f = declared_.find(d);
          if (f != declared_.end()) {
            *n->mutable_fields() = protocol::ToProto(f->second);
            n->set_fields_known(true);
          }
        }
        reply = protocol::EncodeReply(op, id, resp);
      } else if (op == Opcode::kAdminEvictNamespace) {
        pb::EvictNamespaceRequest req;
        pb::EvictNamespaceResponse resp;
        (void)req.ParseFromString(body);
        std::lock_guard<std::mutex> l(mu_);
        uint64_t n = 0;
        for (auto it = store_.begin(); it != store_.end();) {
          if (std::string(it->second.namespace_digest.View()) == req.namespace_digest()) {
            it = store_.erase(it);
            ++n;
          } else {
            ++it;
          }
        }
        resp.set_evicted(n);
        reply = protocol::EncodeReply(op, id, resp);
      } else if (op == Opcode::kAdminExport) {
        pb::ExportRequest req;
        (void)req.ParseFromString(body);
        std::lock_guard<std::mutex> l(mu_);
        for (const auto& [k, c] : store_) {
          if (!req.namespace_digest().empty() &&
              req.namespace_digest() != std::string(c.namespace_digest.View())) {
            continue;
          }
          pb::ExportResponse resp;
          auto* e = resp.add_chunks();
          e->set_key(std::string(k.View()));
          e->set_parent(std::string(c.parent.View()));
          e->set_namespace_digest(std::string(c.namespace_digest.View()));
          auto f = declared_.find(c.namespace_digest);
          if (f != declared_.end()) {
            *e->mutable_fields() = protocol::ToProto(f->second);
            e->set_fields_known(true);
          }
          e->mutable_tokens()->Add(c.tokens.begin(), c.tokens.end());
          e->set_extra(c.extra);
          e->set_value_size(c.value.size());
          e->set_tier(pb::TIER_DRAM);
          send(protocol::EncodeReply(op, id, resp, protocol::kFlagMore));
        }
        reply = protocol::EncodeReply(op, id, pb::ExportResponse());
      } else if (op == Opcode::kPing) {
        reply = protocol::EncodeReply(op, id, pb::PingResponse());
      } else {
        reply =
            protocol::EncodeError(op, id, UnimplementedError("fake twd: not implemented"), false);
      }
      int window = reverse_window;
      if (window > 1) {
        held.push_back(std::move(reply));
        if (static_cast<int>(held.size()) >= window) {
          for (auto it = held.rbegin(); it != held.rend(); ++it) send(*it);
          held.clear();
        }
      } else {
        send(reply);
      }
    }
  }
}

}  // namespace tw::client::testing
