#include "server.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "service_metrics.h"
#include "socket_codec.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/protocol/frame.h"
#include "tw/protocol/messages.h"
#include "unix_socket.h"
#include "worker_pool.h"

namespace tw::twd {
namespace {

using protocol::DecodeState;
using protocol::Opcode;

constexpr uint64_t kClientTag = 1;
constexpr uint64_t kAdminTag = 2;
constexpr uint64_t kEventTag = 3;
constexpr uint64_t kFirstConnTag = 16;
constexpr size_t kReadChunk = 64 * 1024;
// A connection's epoll events: EPOLLOUT is added only while replies wait for socket space, so
// a client reading its replies does not wake the reactor once per reply.
constexpr uint32_t kConnEvents = EPOLLIN | EPOLLRDHUP | EPOLLET;
// A client's arena is populated (Arena::Populate) on a worker in steps of this size.
constexpr uint64_t kPopulateStep = uint64_t{64} << 20;

// One client connection. `in`, `fds`, `eof`, `hup_seen` belong to the reactor thread; the
// output side is guarded by `mu` and written by workers and the reactor.
struct Connection {
  uint64_t tag = 0;
  int fd = -1;
  std::shared_ptr<Session> session;
  std::string in;
  size_t in_off = 0;
  std::vector<protocol::UniqueFd> fds;
  bool eof = false;
  // epoll reported the peer's hang-up: read until EOF (a short read is then no proof that
  // the socket is empty of everything, since the hang-up's own edge was already used).
  bool hup_seen = false;
  std::atomic<uint32_t> inflight{0};
  // Set by the reactor when it stops reading this connection for a reason only a worker's
  // completion can lift (in-flight cap, or EOF with requests outstanding); the worker that
  // finds it set wakes the reactor.
  std::atomic<bool> waiting{false};

  std::mutex mu;
  std::string out;        // GUARDED_BY(mu)
  size_t out_off = 0;     // GUARDED_BY(mu)
  bool closed = false;    // GUARDED_BY(mu)
  bool broken = false;    // GUARDED_BY(mu): write failed or output over its cap
  bool want_out = false;  // GUARDED_BY(mu): EPOLLOUT armed (only while output is pending)

  size_t PendingOut() {
    std::lock_guard lock(mu);
    return out.size() - out_off;
  }
};

}  // namespace

struct Server::Impl {
  ServerOptions options;
  ServiceCore* core = nullptr;
  std::unique_ptr<SocketCodec> codec;
  ListeningSocket client;
  ListeningSocket admin;
  protocol::UniqueFd epoll;
  protocol::UniqueFd event;
  std::thread reactor;
  std::unique_ptr<WorkerPool> workers;

  std::atomic<bool> draining{false};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> inflight{0};
  std::atomic<size_t> connection_count{0};
  uint64_t next_tag = kFirstConnTag;
  std::unordered_map<uint64_t, std::shared_ptr<Connection>> conns;  // reactor thread only

  std::mutex posted_mu;
  std::deque<uint64_t> posted;  // GUARDED_BY(posted_mu): connections to revisit

  void Post(uint64_t tag) {
    {
      std::lock_guard lock(posted_mu);
      posted.push_back(tag);
    }
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(event.get(), &one, sizeof one);
  }

  // Writes what it can; marks the connection broken on error or when a client stops reading.
  // REQUIRES: c.mu held.
  void FlushLocked(Connection& c) {
    while (!c.closed && !c.broken && c.out_off < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      c.broken = true;
    }
    if (c.out_off == c.out.size()) {
      c.out.clear();
      c.out_off = 0;
    } else if (c.out_off > (1u << 20)) {
      c.out.erase(0, c.out_off);
      c.out_off = 0;
    }
    if (c.out.size() - c.out_off > Server::kMaxOutputBytes) c.broken = true;
    const bool pending = c.out_off < c.out.size() && !c.closed && !c.broken;
    if (pending != c.want_out && !c.closed) {
      struct epoll_event ev;
      ev.events = kConnEvents | (pending ? EPOLLOUT : 0u);
      ev.data.u64 = c.tag;
      // Arming reports a socket that became writable meanwhile at once: no wakeup is lost.
      if (::epoll_ctl(epoll.get(), EPOLL_CTL_MOD, c.fd, &ev) == 0) c.want_out = pending;
    }
  }

  // Queues reply frames and flushes. Returns false when the connection must be closed.
  bool Send(Connection& c, const std::vector<std::string>& frames) {
    std::lock_guard lock(c.mu);
    if (c.closed) return true;
    for (const auto& f : frames) c.out.append(f);
    FlushLocked(c);
    return !c.broken;
  }

  void Close(const std::shared_ptr<Connection>& c, std::string_view why) {
    {
      std::lock_guard lock(c->mu);
      if (c->closed) return;
      c->closed = true;
      ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, c->fd, nullptr);
      ::close(c->fd);
    }
    TW_LOG(kInfo, "client disconnected",
           {{"session", c->session->id},
            {"uid", c->session->peer.uid},
            {"pid", c->session->peer.pid},
            {"why", why}});
    if (!c->session->admin) core->ClientDisconnected();
    conns.erase(c->tag);
    connection_count.store(conns.size());
  }

  // Answers a protocol violation once and closes.
  void Fatal(const std::shared_ptr<Connection>& c, Opcode op, uint64_t id, const Status& s,
             std::string_view kind) {
    ServiceMetrics::Get().ProtocolError(kind);
    TW_LOG(kWarn, "protocol violation, closing",
           {{"session", c->session->id},
            {"uid", c->session->peer.uid},
            {"pid", c->session->peer.pid},
            {"kind", kind},
            {"status", s}});
    Send(*c, {protocol::EncodeError(op, id, s, true)});
    Close(c, kind);
  }

  void Accept(int listen_fd, bool is_admin) {
    for (;;) {
      int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          TW_LOG(kWarn, "accept failed", {{"status", ErrnoStatus(errno, "accept4")}});
        }
        return;
      }
      auto c = std::make_shared<Connection>();
      c->fd = fd;
      c->tag = next_tag++;
      c->session = std::make_shared<Session>();
      c->session->id = c->tag - kFirstConnTag + 1;
      c->session->admin = is_admin;
      c->session->peer = PeerOf(fd);
      const PeerCredentials& cred = c->session->peer;
      conns.emplace(c->tag, c);
      connection_count.store(conns.size());
      if (!is_admin) core->ClientConnected();
      TW_LOG(kInfo, "client connected",
             {{"session", c->session->id},
              {"socket", is_admin ? "admin" : "client"},
              {"uid", cred.uid},
              {"gid", cred.gid},
              {"pid", cred.pid}});
      const uint32_t max_clients = core->config()->limits.max_clients;
      if (!is_admin && core->connected_clients() > max_clients) {
        Fatal(c, Opcode::kInvalid, 0,
              ResourceExhaustedError(StrCat("twd serves at most ", max_clients, " clients")),
              "max_clients");
        continue;
      }
      struct epoll_event ev;
      ev.events = kConnEvents;
      ev.data.u64 = c->tag;
      if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) Close(c, "epoll_ctl");
    }
  }

  // Reads until the socket is empty, EOF or the input buffer is full enough for one maximal
  // frame; `*drained` tells whether the socket was found empty (or at EOF), so that only new
  // bytes (a new edge) can give it more. Returns false when the connection was closed.
  bool Read(const std::shared_ptr<Connection>& c, size_t max_frame, bool* drained) {
    const size_t cap = max_frame + protocol::kHeaderSize + kReadChunk;
    uint8_t buf[kReadChunk];
    *drained = c->eof;
    while (!c->eof && c->in.size() - c->in_off < cap) {
      const size_t fds_before = c->fds.size();
      auto n = protocol::RecvWithFds(c->fd, std::span<uint8_t>(buf, sizeof buf), &c->fds);
      if (!n.ok()) {
        if (n.status().code() == StatusCode::kUnavailable) {
          *drained = true;
          break;
        }
        Fatal(c, Opcode::kInvalid, 0, n.status(), "recv");
        return false;
      }
      if (*n == 0) {
        c->eof = true;
        *drained = true;
        break;
      }
      c->in.append(reinterpret_cast<char*>(buf), *n);
      // A short read emptied the socket — unless it stopped after a message that carried
      // descriptors (the kernel ends a read there), so that case reads again. Saves the
      // recvmsg that would only say EAGAIN.
      if (*n < sizeof buf && c->fds.size() == fds_before && !c->hup_seen) {
        *drained = true;
        break;
      }
    }
    if (c->session->hello_done && !c->fds.empty()) {
      Fatal(c, Opcode::kInvalid, 0, InvalidArgumentError("descriptor passed after the handshake"),
            "stray_fd");
      return false;
    }
    if (c->fds.size() > 1) {
      Fatal(c, Opcode::kHello, 0, InvalidArgumentError("more than one descriptor passed"),
            "stray_fd");
      return false;
    }
    return true;
  }

  // Decodes and dispatches frames while the connection may take more work. Returns false
  // when the connection was closed.
  bool Process(const std::shared_ptr<Connection>& c) {
    const auto cfg_ptr = core->config();
    const config::Config& cfg = *cfg_ptr;
    protocol::DecodeLimits dl;
    dl.max_body = static_cast<uint32_t>(
        std::min<uint64_t>(cfg.limits.max_frame_size, protocol::kAbsoluteMaxBody));
    Session& s = *c->session;
    while (!draining.load()) {
      if (c->inflight.load() >= cfg.limits.max_inflight_per_client) {
        // Publish the wait, then re-check: a completion in between either sees the flag or
        // is seen here.
        c->waiting.store(true);
        if (c->inflight.load() >= cfg.limits.max_inflight_per_client) break;
        c->waiting.store(false);
      }
      if (c->PendingOut() > Server::kPauseOutputBytes) break;
      std::string_view avail(c->in.data() + c->in_off, c->in.size() - c->in_off);
      protocol::DecodedFrame d = protocol::DecodeFrame(avail, dl);
      if (d.state == DecodeState::kNeedMore) break;
      if (d.state == DecodeState::kError) {
        Fatal(c, d.header.opcode, d.header.request_id, d.error, "bad_frame");
        return false;
      }
      const protocol::FrameHeader h = d.header;
      auto parsed = protocol::ParseRequest(h.opcode, d.body, codec->Limits(s));
      c->in_off += d.consumed;
      if (!s.hello_done) {
        if (h.opcode == Opcode::kHello) {
          if (!parsed.ok()) {
            Fatal(c, h.opcode, h.request_id, parsed.status(), "bad_hello");
            return false;
          }
          auto resp =
              codec->Hello(s, static_cast<const pb::HelloRequest&>(**parsed), std::move(c->fds));
          c->fds.clear();
          if (!resp.ok()) {
            Fatal(c, h.opcode, h.request_id, resp.status(), "hello_refused");
            return false;
          }
          s.hello_done = true;
          TW_LOG(kInfo, "hello",
                 {{"session", s.id},
                  {"client", s.client_name},
                  {"uid", s.peer.uid},
                  {"tenant", s.tenant},
                  {"arena_bytes", s.arena.size()},
                  {"namespaces", resp->namespace_digests_size()}});
          if (!Send(*c, {protocol::EncodeReply(h.opcode, h.request_id, *resp)})) {
            Close(c, "write failed");
            return false;
          }
          PopulateArena(c);
          continue;
        }
        if (!s.admin) {
          Fatal(c, h.opcode, h.request_id,
                FailedPreconditionError(StrCat(protocol::ToString(h.opcode), " before hello")),
                "no_hello");
          return false;
        }
        s.hello_done = true;  // the admin socket needs no handshake
      } else if (h.opcode == Opcode::kHello) {
        Fatal(c, h.opcode, h.request_id, FailedPreconditionError("second hello"), "second_hello");
        return false;
      }
      if (!parsed.ok()) {
        // The framing is intact: answer and keep the connection.
        ServiceMetrics::Get().ProtocolError("bad_request");
        TW_LOG(kWarn, "bad request",
               {{"session", s.id},
                {"uid", s.peer.uid},
                {"op", protocol::ToString(h.opcode)},
                {"status", parsed.status()}});
        if (!Send(*c, {protocol::EncodeError(h.opcode, h.request_id, parsed.status(), false)})) {
          Close(c, "write failed");
          return false;
        }
        continue;
      }
      if (codec->CanRunInline(h.opcode, **parsed)) {
        // Pure in-memory work (ping, a lookup without lease or tenant checks): answering on
        // the reactor saves the hand-off to a worker, which dominates a small request.
        if (!Send(*c, codec->Handle(s, h, **parsed, Clock::now()))) {
          Close(c, "write failed");
          return false;
        }
        continue;
      }
      Dispatch(c, h, std::shared_ptr<google::protobuf::MessageLite>(std::move(*parsed)));
    }
    // Compact the input buffer.
    if (c->in_off == c->in.size()) {
      c->in.clear();
      c->in_off = 0;
    } else if (c->in_off > (1u << 20)) {
      c->in.erase(0, c->in_off);
      c->in_off = 0;
    }
    return true;
  }

  void Dispatch(const std::shared_ptr<Connection>& c, const protocol::FrameHeader& h,
                std::shared_ptr<google::protobuf::MessageLite> request) {
    const auto received = Clock::now();
    if (h.opcode == Opcode::kPut) {
      codec->OnPutQueued(static_cast<const pb::PutRequest&>(*request));
    }
    c->inflight.fetch_add(1);
    inflight.fetch_add(1);
    workers->Submit([this, c, h, request, received] {
      // Streamed frames go out as they fill; past kPauseOutputBytes unsent the worker waits
      // for the client to read, and gives up when the connection or the server goes away.
      auto emit = [this, &c](std::string frame) {
        if (!Send(*c, {std::move(frame)})) return false;
        while (c->PendingOut() > Server::kPauseOutputBytes) {
          {
            std::lock_guard lock(c->mu);
            if (c->closed || c->broken) return false;
          }
          if (stop.load() || draining.load()) return false;
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return true;
      };
      std::vector<std::string> frames = codec->Handle(*c->session, h, *request, received, emit);
      if (h.opcode == Opcode::kPut) {
        codec->OnPutDone(static_cast<const pb::PutRequest&>(*request));
      }
      const bool ok = Send(*c, frames);
      c->inflight.fetch_sub(1);
      inflight.fetch_sub(1);
      if (!ok || c->waiting.exchange(false)) Post(c->tag);
    });
  }

  // Fills the page tables of a new session's arena on a worker, step by step, so that twd's
  // copies into it take no page faults (a first touch costs far more than the copy of a
  // page). Stops early when the connection or the server goes away.
  void PopulateArena(const std::shared_ptr<Connection>& c) {
    if (c->session->arena.size() == 0) return;
    workers->Submit([this, c] {
      const protocol::Arena& arena = c->session->arena;
      for (uint64_t off = 0; off < arena.size(); off += kPopulateStep) {
        if (stop.load() || draining.load()) return;
        {
          std::lock_guard lock(c->mu);
          if (c->closed) return;
        }
        Status st = arena.Populate(off, kPopulateStep);
        if (!st.ok()) {
          TW_LOG(kDebug, "arena not populated", {{"session", c->session->id}, {"status", st}});
          return;
        }
      }
    });
  }

  // Flushes, reads and processes until nothing moves. Runs on the reactor thread.
  void Serve(const std::shared_ptr<Connection>& c) {
    const size_t max_frame = core->config()->limits.max_frame_size;
    for (;;) {
      bool broken;
      {
        std::lock_guard lock(c->mu);
        FlushLocked(*c);
        broken = c->broken;
      }
      if (broken) {
        TW_LOG(kWarn, "closing a connection that does not read its replies or failed",
               {{"session", c->session->id}, {"uid", c->session->peer.uid}});
        ServiceMetrics::Get().ProtocolError("slow_reader");
        Close(c, "write failed or output over its cap");
        return;
      }
      if (draining.load()) return;
      const size_t size_before = c->in.size();
      const size_t off_before = c->in_off;
      bool drained = false;
      if (!Read(c, max_frame, &drained)) return;
      const bool got_bytes = c->in.size() != size_before;
      if (!Process(c)) return;
      const bool consumed = c->in_off != off_before || c->in.size() < size_before;
      if (c->eof) {
        c->waiting.store(true);
        // Replies still unsent go out first (a half-closed client still reads); the
        // EPOLLOUT edge brings the reactor back when the socket drains.
        if (c->inflight.load() == 0 && c->PendingOut() == 0) {
          Close(c, "peer closed");
          return;
        }
      }
      // Once the socket was found empty, only a new edge (bytes, space for output) or a
      // worker's Post can bring more to do.
      if (drained || (!got_bytes && !consumed)) return;
    }
  }

  void Loop() {
    auto last_tick = std::chrono::steady_clock::now();
    bool listeners_closed = false;
    epoll_event events[64];
    while (!stop.load()) {
      if (draining.load() && !listeners_closed) {
        ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, client.fd.get(), nullptr);
        client.Close();
        if (admin.fd.valid()) {
          ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, admin.fd.get(), nullptr);
          admin.Close();
        }
        listeners_closed = true;
      }
      int n = ::epoll_wait(epoll.get(), events, 64, 50);
      for (int i = 0; i < n; ++i) {
        const uint64_t tag = events[i].data.u64;
        if (tag == kClientTag) {
          if (!draining.load()) Accept(client.fd.get(), false);
        } else if (tag == kAdminTag) {
          if (!draining.load()) Accept(admin.fd.get(), true);
        } else if (tag == kEventTag) {
          uint64_t v;
          [[maybe_unused]] ssize_t r = ::read(event.get(), &v, sizeof v);
        } else {
          auto it = conns.find(tag);
          if (it == conns.end()) continue;
          if (events[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) it->second->hup_seen = true;
          Serve(std::shared_ptr<Connection>(it->second));
        }
      }
      std::deque<uint64_t> todo;
      {
        std::lock_guard lock(posted_mu);
        todo.swap(posted);
      }
      for (uint64_t tag : todo) {
        auto it = conns.find(tag);
        if (it != conns.end()) Serve(std::shared_ptr<Connection>(it->second));
      }
      const auto now = std::chrono::steady_clock::now();
      if (now - last_tick >= options.tick) {
        last_tick = now;
        core->Tick();
      }
    }
    std::vector<std::shared_ptr<Connection>> all;
    for (auto& [tag, c] : conns) all.push_back(c);
    for (auto& c : all) {
      {
        std::lock_guard lock(c->mu);
        FlushLocked(*c);
      }
      Close(c, "twd shutting down");
    }
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options, ServiceCore* core) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->core = core;
  impl->codec = std::make_unique<SocketCodec>(core);
  TW_ASSIGN_OR_RETURN(impl->client,
                      Listen(options.socket_path, options.socket_mode, options.socket_group));
  if (!options.admin_socket_path.empty()) {
    TW_ASSIGN_OR_RETURN(impl->admin, Listen(options.admin_socket_path, 0600, ""));
  }
  impl->epoll.Reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!impl->epoll.valid()) return ErrnoStatus(errno, "epoll_create1");
  impl->event.Reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!impl->event.valid()) return ErrnoStatus(errno, "eventfd");
  auto add = [&](int fd, uint64_t tag) -> Status {
    struct epoll_event ev;
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (::epoll_ctl(impl->epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      return ErrnoStatus(errno, "epoll_ctl");
    }
    return OkStatus();
  };
  TW_RETURN_IF_ERROR(add(impl->client.fd.get(), kClientTag));
  if (impl->admin.fd.valid()) TW_RETURN_IF_ERROR(add(impl->admin.fd.get(), kAdminTag));
  TW_RETURN_IF_ERROR(add(impl->event.get(), kEventTag));
  size_t workers = options.workers;
  if (workers == 0) {
    workers = std::clamp<size_t>(std::thread::hardware_concurrency(), 4, 32);
  }
  impl->workers = std::make_unique<WorkerPool>(workers);
  Impl* raw = impl.get();
  impl->reactor = std::thread([raw] { raw->Loop(); });
  TW_LOG(kInfo, "serving",
         {{"socket", options.socket_path},
          {"admin_socket", options.admin_socket_path},
          {"workers", workers}});
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::~Server() { Stop(std::chrono::nanoseconds(0)); }

void Server::Stop(std::chrono::nanoseconds grace) {
  if (!impl_->reactor.joinable()) return;
  impl_->draining.store(true);
  impl_->Post(0);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (impl_->inflight.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Let the reactor flush replies written meanwhile, then close everything.
  impl_->stop.store(true);
  impl_->Post(0);
  impl_->reactor.join();
  impl_->workers.reset();  // runs what is still queued (replies go nowhere), joins
}

size_t Server::connections() const { return impl_->connection_count.load(); }
uint64_t Server::inflight() const { return impl_->inflight.load(); }

}  // namespace tw::twd
