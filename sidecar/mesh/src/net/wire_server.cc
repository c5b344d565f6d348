#include "wire_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tokenwarehouse/v1/peer.pb.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "wire_io.h"

namespace tw::mesh::net {

namespace pb = ::tokenwarehouse::v1;

namespace {

// The longest a small answer (a Locate's, an error) may wait for the requester to read it.
constexpr auto kAnswerTimeout = std::chrono::seconds(10);
// A requester's budget is capped: a holder never works on a request for longer.
constexpr uint64_t kMaxBudgetNs = uint64_t{3600} * 1000000000;

}  // namespace

WireServer::WireServer(Options options, Directory* directory, ChunkSource* source)
    : o_(std::move(options)),
      directory_(directory),
      source_(source),
      pool_(std::make_shared<BufferPool>()) {}

StatusOr<std::unique_ptr<WireServer>> WireServer::Start(Options options, Directory* directory,
                                                        ChunkSource* source) {
  if (directory == nullptr || source == nullptr) {
    return InvalidArgumentError("mesh wire server: a directory and a chunk source are required");
  }
  std::unique_ptr<WireServer> s(new WireServer(std::move(options), directory, source));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(s->o_.port);
  const std::string addr = s->o_.listen_address;
  if (int rc = getaddrinfo(addr.empty() ? nullptr : addr.c_str(), service.c_str(), &hints, &res);
      rc != 0) {
    return UnavailableError(StrCat("mesh wire server: ", addr, ": ", gai_strerror(rc)));
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
    const int err = errno;
    freeaddrinfo(res);
    if (fd >= 0) close(fd);
    return UnavailableError(
        StrCat("mesh wire server: cannot listen on ", addr, ":", s->o_.port, ": ", strerror(err)));
  }
  freeaddrinfo(res);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  s->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  s->listen_fd_ = fd;
  s->wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (s->wake_fd_ < 0) {
    close(fd);
    return InternalError(StrCat("mesh wire server: eventfd: ", strerror(errno)));
  }
  WireServer* self = s.get();
  s->acceptor_ = std::thread([self] { self->AcceptLoop(); });
  return s;
}

WireServer::~WireServer() { Stop(); }

void WireServer::Stop() {
  std::call_once(stopped_, [this] {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      for (Conn& c : conns_) shutdown(c.fd, SHUT_RDWR);
    }
    const uint64_t one = 1;
    if (write(wake_fd_, &one, sizeof(one)) < 0) {
      TW_LOG(kWarn, "mesh wire server: cannot wake the acceptor", {{"error", strerror(errno)}});
    }
    if (acceptor_.joinable()) acceptor_.join();
    std::list<Conn> conns;
    {
      std::lock_guard lock(mu_);
      conns.swap(conns_);
    }
    for (Conn& c : conns) {
      shutdown(c.fd, SHUT_RDWR);
      if (c.thread.joinable()) c.thread.join();
      close(c.fd);
    }
    close(listen_fd_);
    close(wake_fd_);
  });
}

void WireServer::ReapLocked() {
  for (auto it = conns_.begin(); it != conns_.end();) {
    if (it->done.load()) {
      it->thread.join();
      close(it->fd);
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

void WireServer::AcceptLoop() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      TW_LOG(kError, "mesh wire server: poll failed; no more connections accepted",
             {{"error", strerror(errno)}});
      return;
    }
    if (p[1].revents != 0) return;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // The pending connection stays queued and the socket readable: wait a little (or for
        // Stop) instead of spinning on it.
        TW_LOG(kWarn, "mesh wire server: cannot accept a connection", {{"error", strerror(errno)}});
        pollfd w{wake_fd_, POLLIN, 0};
        if (poll(&w, 1, 100) > 0) return;
      }
      continue;  // otherwise the peer gave up before it was accepted
    }
    std::lock_guard lock(mu_);
    if (stopping_) {
      close(fd);
      return;
    }
    ReapLocked();
    if (conns_.size() >= o_.max_connections || !WirePrepareAccepted(fd).ok()) {
      WireSendFrame(fd, WireType::kError,
                    EncodeError(ResourceExhaustedError(
                        StrCat("mesh wire: more than ", o_.max_connections, " connections"))),
                    Clock::now() + std::chrono::milliseconds(100))
          .IgnoreError();
      close(fd);
      continue;
    }
    Conn& c = conns_.emplace_back();
    c.fd = fd;
    c.thread = std::thread([this, conn = &c] { Serve(conn); });
  }
}

void WireServer::Serve(Conn* c) {
  for (;;) {
    auto frame = WireRecvFrame(c->fd, Deadline::max());
    if (!frame.ok()) break;  // closed by the requester, or stopping
    Status st;
    switch (frame->header.type) {
      case WireType::kLocate:
        st = ServeLocate(c->fd, frame->body);
        break;
      case WireType::kFetch:
        st = ServeFetch(c->fd, frame->body);
        break;
      default:
        st = InvalidArgumentError("mesh wire: not a request");
        break;
    }
    if (!st.ok()) {
      if (st.code() == StatusCode::kInvalidArgument) {
        WireSendFrame(c->fd, WireType::kError, EncodeError(st), Clock::now() + kAnswerTimeout)
            .IgnoreError();
      }
      break;
    }
  }
  // The requester sees the end now; the descriptor is closed when the thread is reaped.
  shutdown(c->fd, SHUT_RDWR);
  c->done.store(true);
}

Status WireServer::ServeLocate(int fd, std::string_view body) {
  TW_ASSIGN_OR_RETURN(std::vector<Key> keys, DecodeLocate(body));
  Directory::Packed answer;
  directory_->LookupPacked(keys, &answer);
  const std::string out = EncodeLocateAnswer(answer.nodes, answer.offsets, answer.holders);
  return WireSendFrame(fd, WireType::kLocateAnswer, out, Clock::now() + kAnswerTimeout);
}

Status WireServer::ServeFetch(int fd, std::string_view body) {
  TW_ASSIGN_OR_RETURN(WireFetchRequest req, DecodeFetch(body));
  const FetchSpec spec{req.namespace_digest, req.key};
  const Deadline deadline =
      Clock::now() + std::chrono::nanoseconds(std::min(req.budget_ns, kMaxBudgetNs));
  pb::FetchHeader h;
  auto send_header = [&] {
    return WireSendFrame(fd, WireType::kFetchHeader, h.SerializeAsString(), deadline);
  };
  const std::optional<uint64_t> size = source_->ValueSize(spec);
  if (!size) {
    h.set_miss_reason(static_cast<uint32_t>(MissReason::kAbsent));
    return send_header();
  }
  if (*size > o_.max_value_size) {
    h.set_miss_reason(static_cast<uint32_t>(MissReason::kIoError));
    h.set_error(StrCat("value of ", *size, " bytes is over the served maximum"));
    return send_header();
  }
  std::shared_ptr<std::byte[]> buf = pool_->Get(*size);
  FetchResult r = source_->Read(spec, std::span<std::byte>(buf.get(), *size), deadline);
  if (r.miss != MissReason::kNone) {
    h.set_miss_reason(static_cast<uint32_t>(r.miss));
    h.set_error(std::string(r.error.message()));
    return send_header();
  }
  for (uint64_t s : r.segment_sizes) h.add_segment_sizes(s);
  h.set_value_size(r.bytes);
  if (r.lineage) {
    h.set_parent(std::string(r.lineage->parent.View()));
    h.set_extra(r.lineage->extra);
    for (uint32_t t : r.lineage->tokens) h.add_tokens(t);
  }
  // Header and value in one sendmsg where the socket takes them: no copy in user space.
  const std::string header = h.SerializeAsString();
  auto fh = EncodeWireHeader(WireType::kFetchHeader, static_cast<uint32_t>(header.size()));
  iovec iov[3] = {{fh.data(), fh.size()},
                  {const_cast<char*>(header.data()), header.size()},
                  {buf.get(), r.bytes}};
  // Counted before the send: the requester may have every byte (and be asked) before this
  // thread returns from sendmsg.
  if (o_.on_served) o_.on_served(req.from_node, r.bytes);
  return WireSendAll(fd, iov, deadline);
}

}  // namespace tw::mesh::net
