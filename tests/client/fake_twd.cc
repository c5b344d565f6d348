#include "fake_twd.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "tw/protocol/fd_passing.h"
#include "tw/protocol/messages.h"

namespace tw::client::testing {

namespace pb = ::tokenwarehouse::v1;
using protocol::Opcode;

FakeTwd::~FakeTwd() {
  stop_ = true;
  if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  if (!path_.empty()) unlink(path_.c_str());
}

Status FakeTwd::Start(const std::string& socket_path) {
  path_ = socket_path;
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return ErrnoStatus(errno, "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
  unlink(path_.c_str());
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return ErrnoStatus(errno, "bind " + path_);
  }
  if (listen(listen_fd_, 8) != 0) return ErrnoStatus(errno, "listen");
  thread_ = std::thread([this] { Serve(); });
  return OkStatus();
}

size_t FakeTwd::chunks() const {
  std::lock_guard<std::mutex> l(mu_);
  return store_.size();
}

void FakeTwd::Serve() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ServeConnection(fd);
    close(fd);
  }
}

void FakeTwd::ServeConnection(int fd) {
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
        Status ok = protocol::CheckArenaFd(fds.back().get(), req.arena_size());
        auto mapped = ok.ok() ? protocol::Arena::Map(fds.back().get(), req.arena_size(), false)
                              : StatusOr<protocol::Arena>(ok);
        if (!mapped.ok()) {
          send(protocol::EncodeError(op, id, mapped.status(), true));
          return;
        }
        arena = std::move(*mapped);
        last_arena_size = req.arena_size();
        resp.set_version(1);
        resp.set_server_version("fake");
        for (const auto& ns : req.namespaces()) {
          resp.add_namespace_digests(std::string(NamespaceDigest(protocol::FromProto(ns)).View()));
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
        std::lock_guard<std::mutex> l(mu_);
        for (const auto& item : req.items()) {
          auto* r = resp.add_results();
          size_t prefix = SIZE_MAX;
          for (const auto& chain : item.chains()) {
            size_t p = 0;
            while (p < static_cast<size_t>(chain.keys_size()) &&
                   store_.count(protocol::KeyFromBytes(chain.keys(static_cast<int>(p)))) != 0) {
              ++p;
            }
            prefix = std::min(prefix, p);
          }
          if (prefix == SIZE_MAX) prefix = 0;
          r->set_prefix(static_cast<uint32_t>(prefix));
          for (int c = 0; c < item.chains_size(); ++c) {
            auto* t = r->add_chains();
            for (size_t j = 0; j < prefix; ++j) t->add_tiers(pb::TIER_DRAM);
          }
          bool all =
              item.chains_size() > 0 && prefix == static_cast<size_t>(item.chains(0).keys_size());
          r->set_miss(all ? pb::MISS_REASON_NONE : pb::MISS_REASON_ABSENT);
          r->set_lease(req.take_lease() && prefix > 0 ? 77 : 0);
        }
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
        resp.set_server_version("fake");
        resp.set_arena_size(arena.size());
        reply = protocol::EncodeReply(op, id, resp);
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
