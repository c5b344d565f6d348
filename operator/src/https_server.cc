#include "tw/operator/https_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <list>
#include <mutex>
#include <optional>
#include <thread>

#include "tw/common/log.h"
#include "tw/common/strings.h"

namespace tw::op {
namespace {

using Clock = std::chrono::steady_clock;

std::string SslErrorText() {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

StatusOr<std::shared_ptr<SSL_CTX>> MakeContext(const std::string& cert_pem,
                                               const std::string& key_pem) {
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!ctx) return InternalError("SSL_CTX_new: " + SslErrorText());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  BIO* bio = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  X509* leaf = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  if (leaf == nullptr) {
    BIO_free(bio);
    ERR_clear_error();
    return InvalidArgumentError("webhook certificate: no PEM certificate");
  }
  int ok = SSL_CTX_use_certificate(ctx.get(), leaf);
  X509_free(leaf);
  while (X509* extra = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    SSL_CTX_add0_chain_cert(ctx.get(), extra);  // takes ownership
  }
  ERR_clear_error();
  BIO_free(bio);
  if (ok != 1) return InvalidArgumentError("webhook certificate: " + SslErrorText());
  bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) {
    ERR_clear_error();
    return InvalidArgumentError("webhook certificate: no PEM private key");
  }
  ok = SSL_CTX_use_PrivateKey(ctx.get(), key);
  EVP_PKEY_free(key);
  if (ok != 1 || SSL_CTX_check_private_key(ctx.get()) != 1) {
    return InvalidArgumentError("webhook certificate: the key does not match: " + SslErrorText());
  }
  return ctx;
}

StatusOr<int> Listen(const std::string& address, int* port) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return InvalidArgumentError(StrCat("webhook address \"", address, "\": want HOST:PORT"));
  }
  std::string host = address.substr(0, colon);
  std::string service = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) {
    return InvalidArgumentError(StrCat("webhook address \"", address, "\": ", gai_strerror(rc)));
  }
  int fd = -1;
  int err = 0;
  for (addrinfo* a = res; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
      err = errno;
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) return ErrnoStatus(err, StrCat("webhook: listen on ", address));
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  *port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return fd;
}

}  // namespace

Status HttpsServerConfig::Validate() const {
  if (address.empty()) return InvalidArgumentError("webhook address: empty");
  if (request_timeout.count() <= 0) return InvalidArgumentError("request_timeout: must be > 0");
  if (idle_timeout.count() <= 0) return InvalidArgumentError("idle_timeout: must be > 0");
  if (max_connections < 1) return InvalidArgumentError("max_connections: must be at least 1");
  if (limits.max_body_bytes == 0 || limits.max_header_bytes < 64) {
    return InvalidArgumentError("limits: body must be > 0 bytes, headers at least 64");
  }
  return OkStatus();
}

struct HttpsServer::Impl {
  HttpsServerConfig config;
  Handler handler;
  int listen_fd = -1;
  int stop_fd = -1;  // an eventfd that turns readable once stopping
  int port = 0;
  std::atomic<bool> stopping{false};
  std::atomic<int> active{0};
  std::mutex mu;
  std::shared_ptr<SSL_CTX> ctx;  // guarded by mu
  std::thread acceptor;
  struct Conn {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Conn> conns;  // owned by the acceptor thread until it has been joined

  std::shared_ptr<SSL_CTX> Context() {
    std::lock_guard<std::mutex> lock(mu);
    return ctx;
  }

  // Runs `op` (an SSL call) until it returns > 0 or fails for good; waits for the socket in
  // between, until `deadline` or a stop. Returns op's result, or <= 0; *timed_out tells why.
  template <typename Op>
  int Retry(SSL* ssl, int fd, Op op, Clock::time_point deadline, bool* timed_out) {
    for (;;) {
      ERR_clear_error();
      int r = op();
      if (r > 0) return r;
      int e = SSL_get_error(ssl, r);
      short events;
      if (e == SSL_ERROR_WANT_READ) {
        events = POLLIN;
      } else if (e == SSL_ERROR_WANT_WRITE) {
        events = POLLOUT;
      } else {
        ERR_clear_error();
        return 0;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        *timed_out = true;
        return 0;
      }
      pollfd p[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
      int n = ::poll(p, 2, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
      if (n < 0 && errno != EINTR) return 0;
      if (p[1].revents != 0) return 0;
    }
  }

  bool Send(SSL* ssl, int fd, const std::string& bytes) {
    bool timed_out = false;
    auto deadline = Clock::now() + config.request_timeout;
    return Retry(
               ssl, fd,
               [&] { return SSL_write(ssl, bytes.data(), static_cast<int>(bytes.size())); },
               deadline, &timed_out) > 0;
  }

  void Serve(int fd, std::shared_ptr<SSL_CTX> context) {
    SSL* ssl = SSL_new(context.get());
    context.reset();  // the SSL holds its own reference
    bool timed_out = false;
    if (ssl != nullptr && SSL_set_fd(ssl, fd) == 1 &&
        Retry(
            ssl, fd, [&] { return SSL_accept(ssl); }, Clock::now() + config.request_timeout,
            &timed_out) > 0) {
      ServeRequests(ssl, fd);
      SSL_shutdown(ssl);  // one try: the peer may be gone
    }
    if (ssl != nullptr) SSL_free(ssl);
    ERR_clear_error();
    ::close(fd);
  }

  void ServeRequests(SSL* ssl, int fd) {
    std::string buf;
    char chunk[16384];
    bool first = true;
    while (!stopping) {
      auto idle_deadline = Clock::now() + (first ? config.request_timeout : config.idle_timeout);
      first = false;
      std::optional<Clock::time_point> request_deadline;
      HttpRequest req;
      HttpParseResult parsed;
      for (;;) {
        parsed = ParseHttpRequest(buf, config.limits, &req);
        if (parsed.state != HttpParseState::kIncomplete) break;
        if (!buf.empty() && !request_deadline) {
          request_deadline = Clock::now() + config.request_timeout;
        }
        bool timed_out = false;
        int n = Retry(
            ssl, fd, [&] { return SSL_read(ssl, chunk, sizeof chunk); },
            request_deadline ? *request_deadline : idle_deadline, &timed_out);
        if (n <= 0) {
          if (timed_out && !buf.empty()) {
            TW_LOG(kDebug, "webhook: request not complete in time; connection closed");
            Send(ssl, fd, HttpResponseBytes(408, "text/plain", "request timeout\n", false));
          }
          return;
        }
        buf.append(chunk, static_cast<size_t>(n));
      }
      if (parsed.state == HttpParseState::kError) {
        TW_LOG(kInfo, "webhook: bad HTTP request",
               {{"status", parsed.error_status}, {"error", parsed.error}});
        Send(ssl, fd,
             HttpResponseBytes(parsed.error_status, "text/plain", parsed.error + "\n", false));
        return;
      }
      buf.erase(0, parsed.consumed);
      HttpReply reply;
      try {
        reply = handler(req);
      } catch (const std::exception& e) {
        TW_LOG(kError, "webhook: handler failed", {{"error", e.what()}});
        reply = {500, "text/plain", "internal error\n"};
      }
      bool keep = req.keep_alive && !stopping;
      if (!Send(ssl, fd, HttpResponseBytes(reply.status, reply.content_type, reply.body, keep)) ||
          !keep) {
        return;
      }
    }
  }

  void Reap(bool all) {
    for (auto it = conns.begin(); it != conns.end();) {
      if (all || it->done->load()) {
        it->thread.join();
        it = conns.erase(it);
      } else {
        ++it;
      }
    }
  }

  void Accept() {
    while (!stopping) {
      pollfd p[2] = {{listen_fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
      int n = ::poll(p, 2, 1000);
      Reap(false);
      if (n <= 0 || p[1].revents != 0) continue;
      int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) continue;
      if (active.load() >= config.max_connections) {
        TW_LOG(kWarn, "webhook: too many connections; one refused",
               {{"max_connections", config.max_connections}});
        ::close(fd);
        continue;
      }
      ++active;
      auto done = std::make_shared<std::atomic<bool>>(false);
      conns.push_back({std::thread([this, fd, done, c = Context()]() mutable {
                         Serve(fd, std::move(c));
                         --active;
                         done->store(true);
                       }),
                       done});
    }
    Reap(true);
  }
};

HttpsServer::HttpsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StatusOr<std::unique_ptr<HttpsServer>> HttpsServer::Start(const HttpsServerConfig& config,
                                                          Handler handler,
                                                          const std::string& cert_pem,
                                                          const std::string& key_pem) {
  TW_RETURN_IF_ERROR(config.Validate());
  // OpenSSL writes to the socket with write(2): a peer that has gone would kill the process
  // with SIGPIPE instead of failing the write.
  ::signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->handler = std::move(handler);
  TW_ASSIGN_OR_RETURN(impl->ctx, MakeContext(cert_pem, key_pem));
  TW_ASSIGN_OR_RETURN(impl->listen_fd, Listen(config.address, &impl->port));
  impl->stop_fd = ::eventfd(0, EFD_CLOEXEC);
  if (impl->stop_fd < 0) {
    ::close(impl->listen_fd);
    return ErrnoStatus(errno, "eventfd");
  }
  Impl* raw = impl.get();
  impl->acceptor = std::thread([raw] { raw->Accept(); });
  return std::unique_ptr<HttpsServer>(new HttpsServer(std::move(impl)));
}

HttpsServer::~HttpsServer() {
  impl_->stopping = true;
  uint64_t one = 1;
  if (::write(impl_->stop_fd, &one, sizeof one) < 0) {
    TW_LOG(kWarn, "webhook: cannot wake the server threads", {{"errno", errno}});
  }
  impl_->acceptor.join();
  ::close(impl_->listen_fd);
  ::close(impl_->stop_fd);
}

Status HttpsServer::SetCertificate(const std::string& cert_pem, const std::string& key_pem) {
  TW_ASSIGN_OR_RETURN(auto ctx, MakeContext(cert_pem, key_pem));
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->ctx = std::move(ctx);
  return OkStatus();
}

int HttpsServer::port() const { return impl_->port; }

int HttpsServer::active_connections() const { return impl_->active.load(); }

}  // namespace tw::op
