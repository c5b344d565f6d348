// HttpsServer: a small HTTPS/1.1 server (OpenSSL over TCP) for the admission webhook.
//
// One thread accepts; each connection gets a thread of its own, up to `max_connections`
// (beyond that a new connection is closed at once, so a flood cannot exhaust the process).
// Every request must arrive completely (TLS handshake, headers, body) within
// `request_timeout` of its first byte, and a kept-alive connection may sit idle for
// `idle_timeout`; a slow client is cut off, never waited for. Bodies are bounded by
// HttpLimits (413 beyond). Requests are parsed by ParseHttpRequest(); the handler sees only
// complete requests and never a socket.
//
// The certificate can be replaced while serving (SetCertificate): connections accepted
// afterwards present the new one, connections in progress keep theirs.
//
// Start() sets SIGPIPE to be ignored in the process (a peer that went away must fail a write,
// not kill the process).
//
// Threading: the handler is called from connection threads concurrently and must be
// thread-safe. SetCertificate and port may be called from any thread. Lifetime: the
// destructor stops accepting, cuts every connection and joins every thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "tw/common/status.h"
#include "tw/operator/http_parser.h"

namespace tw::op {

struct HttpsServerConfig {
  // HOST:PORT to listen on ("0.0.0.0:9443"; port 0 picks a free one).
  std::string address;
  HttpLimits limits;
  // A request must arrive completely within this time of its first byte.
  std::chrono::milliseconds request_timeout{10000};
  // A kept-alive connection is closed after this long without a request.
  std::chrono::milliseconds idle_timeout{90000};
  // Connections served at once.
  int max_connections = 64;

  Status Validate() const;
};

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
};

class HttpsServer {
 public:
  using Handler = std::function<HttpReply(const HttpRequest&)>;

  // Listens with the given certificate (PEM chain and key). InvalidArgument for a bad
  // certificate or key, Unavailable when the address cannot be bound.
  static StatusOr<std::unique_ptr<HttpsServer>> Start(const HttpsServerConfig& config,
                                                      Handler handler, const std::string& cert_pem,
                                                      const std::string& key_pem);
  ~HttpsServer();
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  // New connections present this certificate from now on; an invalid pair is refused and
  // the old one stays.
  Status SetCertificate(const std::string& cert_pem, const std::string& key_pem);

  int port() const;
  // Connections being served now (for tests and metrics).
  int active_connections() const;

 private:
  struct Impl;
  explicit HttpsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tw::op
