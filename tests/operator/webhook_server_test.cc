// The pod webhook's HTTP side: the request parser on partial and hostile input, and the HTTPS
// server for real over loopback with an OpenSSL client — routes, bad requests, the body
// limit, a slow client cut off, the connection limit, and a certificate swapped while
// serving (new connections see it).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "tw/common/strings.h"
#include "tw/operator/http_parser.h"
#include "tw/operator/https_server.h"
#include "tw/operator/webhook_certs.h"

namespace tw::op {
namespace {

// ---- parser

TEST(HttpParser, CompleteRequestAndEveryPrefixOfIt) {
  const std::string req =
      "POST /mutate-pods?timeout=5s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: 7\r\n\r\n{\"a\":1}GET /next";
  HttpRequest out;
  for (size_t n = 0; n < req.size() - 9; ++n) {
    auto r = ParseHttpRequest(std::string_view(req).substr(0, n), {}, &out);
    EXPECT_EQ(r.state, HttpParseState::kIncomplete) << n;
  }
  auto r = ParseHttpRequest(req, {}, &out);
  ASSERT_EQ(r.state, HttpParseState::kComplete);
  EXPECT_EQ(r.consumed, req.size() - 9);
  EXPECT_EQ(out.method, "POST");
  EXPECT_EQ(out.Path(), "/mutate-pods");
  EXPECT_EQ(out.Header("content-type"), "application/json");
  EXPECT_EQ(out.body, "{\"a\":1}");
  EXPECT_TRUE(out.keep_alive);
}

TEST(HttpParser, ConnectionSemantics) {
  HttpRequest out;
  ASSERT_EQ(
      ParseHttpRequest("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n", {}, &out).state,
      HttpParseState::kComplete);
  EXPECT_FALSE(out.keep_alive);
  ASSERT_EQ(ParseHttpRequest("GET / HTTP/1.0\r\n\r\n", {}, &out).state, HttpParseState::kComplete);
  EXPECT_FALSE(out.keep_alive);
}

TEST(HttpParser, HostileInputGetsTheRightStatus) {
  HttpLimits limits;
  limits.max_header_bytes = 256;
  limits.max_body_bytes = 100;
  struct Case {
    std::string input;
    int status;
  } cases[] = {
      {"GARBAGE\r\n\r\n", 400},
      {"GET  / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1 x\r\n\r\n", 400},
      {"G(T / HTTP/1.1\r\n\r\n", 400},
      {"GET x HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\n\r\n", 505},
      {"GET / FTP/1.0\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\n\r\n", 411},
      {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
      {"GET / HTTP/1.1\r\nX: " + std::string(300, 'a') + "\r\n\r\n", 431},
      {"GET / HTTP/1.1\r\nX: " + std::string(300, 'a'), 431},  // no end of headers in sight
  };
  for (const auto& c : cases) {
    HttpRequest out;
    auto r = ParseHttpRequest(c.input, limits, &out);
    EXPECT_EQ(r.state, HttpParseState::kError) << c.input;
    EXPECT_EQ(r.error_status, c.status) << c.input << ": " << r.error;
    EXPECT_FALSE(r.error.empty());
  }
}

// Seeded mutations of a valid request (byte flips, cuts, duplications): the parser never
// reads out of bounds (ASan), and a complete parse never claims more bytes than it was given.
TEST(HttpParser, MutatedRequestsNeverOverrun) {
  const std::string valid =
      "POST /mutate-pods HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 9\r\n"
      "\r\n{\"a\":[1]}";
  std::mt19937 rng(17);
  HttpLimits limits;
  limits.max_header_bytes = 128;
  limits.max_body_bytes = 64;
  int complete = 0, errors = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string in = valid;
    for (int m = 0, n = 1 + static_cast<int>(rng() % 4); m < n && !in.empty(); ++m) {
      size_t at = rng() % in.size();
      switch (rng() % 4) {
        case 0:
          in[at] = static_cast<char>(rng());
          break;
        case 1:
          in.resize(at);
          break;
        case 2:
          in.insert(at, in.substr(at, rng() % 16));
          break;
        default:
          in.erase(at, 1 + rng() % 8);
      }
    }
    HttpRequest out;
    auto r = ParseHttpRequest(in, limits, &out);
    if (r.state == HttpParseState::kComplete) {
      ++complete;
      ASSERT_LE(r.consumed, in.size());
      ASSERT_LE(out.body.size(), limits.max_body_bytes);
    } else if (r.state == HttpParseState::kError) {
      ++errors;
      ASSERT_GE(r.error_status, 400);
    }
  }
  EXPECT_GT(complete, 0);
  EXPECT_GT(errors, 0);
}

TEST(HttpParser, ResponseBytes) {
  EXPECT_EQ(HttpResponseBytes(200, "text/plain", "ok\n", true),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n");
  EXPECT_NE(HttpResponseBytes(413, "text/plain", "", false).find("Connection: close\r\n"),
            std::string::npos);
}

// ---- server

struct Certs {
  ServingCert a, b;
  Certs() {
    auto now = std::chrono::system_clock::now();
    a = *GenerateServingCert({"localhost", "127.0.0.1"}, now, std::chrono::hours(1));
    b = *GenerateServingCert({"localhost", "127.0.0.1"}, now, std::chrono::hours(1));
  }
};
const Certs& TestCerts() {
  static const Certs* c = new Certs();
  return *c;
}

// A blocking TLS client that trusts `ca_pem`.
class Client {
 public:
  Client(int port, const std::string& ca_pem) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    BIO* bio = BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size()));
    while (X509* c = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
      X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx_), c);
      X509_free(c);
    }
    ERR_clear_error();
    BIO_free(bio);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Client() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    ::close(fd_);
  }
  bool Handshake() {
    if (!connected_) return false;
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set1_host(ssl_, "127.0.0.1");
    bool ok = SSL_connect(ssl_) == 1;
    ERR_clear_error();
    return ok;
  }
  // The PEM of the certificate the server presented.
  std::string PeerCert() {
    X509* c = SSL_get1_peer_certificate(ssl_);
    if (c == nullptr) return "";
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, c);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<size_t>(n));
    BIO_free(bio);
    X509_free(c);
    return out;
  }
  bool Send(const std::string& bytes) {
    return SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size())) ==
           static_cast<int>(bytes.size());
  }
  // Reads one response (Content-Length framed); "" when the server closed first.
  std::string ReadResponse() {
    std::string buf;
    char chunk[4096];
    for (;;) {
      size_t end = buf.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t cl = buf.find("Content-Length: ");
        size_t len = cl == std::string::npos ? 0 : std::stoul(buf.substr(cl + 16));
        if (buf.size() >= end + 4 + len) return buf.substr(0, end + 4 + len);
      }
      int n = SSL_read(ssl_, chunk, sizeof chunk);
      if (n <= 0) {
        ERR_clear_error();
        return "";
      }
      buf.append(chunk, static_cast<size_t>(n));
    }
  }
  // True once the server has closed the connection (reads until EOF or error).
  bool Closed() {
    char c;
    int n = SSL_read(ssl_, &c, 1);
    ERR_clear_error();
    return n <= 0;
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool connected_ = false;
};

std::string Post(std::string_view path, std::string_view body) {
  return StrCat("POST ", path, " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
                "Content-Length: ", body.size(), "\r\n\r\n", body);
}

class ServerTest : public ::testing::Test {
 protected:
  void Start(HttpsServerConfig config = {}) {
    config.address = "127.0.0.1:0";
    auto server = HttpsServer::Start(
        config,
        [](const HttpRequest& r) {
          if (r.Path() == "/echo") return HttpReply{200, "application/json", r.body};
          return HttpReply{404, "text/plain", "not found\n"};
        },
        TestCerts().a.cert_pem, TestCerts().a.key_pem);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
  }
  std::unique_ptr<Client> Connect(const std::string& ca = TestCerts().a.ca_pem) {
    auto c = std::make_unique<Client>(server_->port(), ca);
    EXPECT_TRUE(c->Handshake());
    return c;
  }
  std::unique_ptr<HttpsServer> server_;
};

TEST_F(ServerTest, KeepAliveRequestsAndRoutes) {
  Start();
  auto c = Connect();
  ASSERT_TRUE(c->Send(Post("/echo", "{\"x\":1}")));
  std::string r = c->ReadResponse();
  EXPECT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << r;
  EXPECT_EQ(r.substr(r.size() - 7), "{\"x\":1}");
  ASSERT_TRUE(c->Send(Post("/nowhere", "")));  // the same connection
  EXPECT_EQ(c->ReadResponse().substr(0, 12), "HTTP/1.1 404");
}

TEST_F(ServerTest, BadRequestsAreAnsweredAndClosed) {
  Start();
  auto c = Connect();
  ASSERT_TRUE(c->Send("BROKEN\r\n\r\n"));
  std::string r = c->ReadResponse();
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 400") << r;
  EXPECT_NE(r.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(c->Closed());
}

TEST_F(ServerTest, BodyOverTheLimitIs413WithoutReadingIt) {
  HttpsServerConfig config;
  config.limits.max_body_bytes = 1024;
  Start(config);
  auto c = Connect();
  ASSERT_TRUE(c->Send("POST /echo HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n"));
  EXPECT_EQ(c->ReadResponse().substr(0, 12), "HTTP/1.1 413");
  EXPECT_TRUE(c->Closed());
}

TEST_F(ServerTest, SlowClientIsCutOff) {
  HttpsServerConfig config;
  config.request_timeout = std::chrono::milliseconds(300);
  Start(config);
  auto c = Connect();
  ASSERT_TRUE(c->Send("POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"));  // never more
  std::string r = c->ReadResponse();  // blocks until the server gives up
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 408") << r;
  EXPECT_TRUE(c->Closed());
}

TEST_F(ServerTest, ConnectionsBeyondTheLimitAreClosed) {
  HttpsServerConfig config;
  config.max_connections = 1;
  Start(config);
  auto first = Connect();
  ASSERT_TRUE(first->Send(Post("/echo", "1")));
  ASSERT_NE(first->ReadResponse(), "");  // served: it holds the only slot
  Client second(server_->port(), TestCerts().a.ca_pem);
  EXPECT_FALSE(second.Handshake()) << "a connection over the limit was served";
  first.reset();  // frees the slot
  bool served = false;
  for (int i = 0; i < 200 && !served; ++i) {  // the slot frees once the thread has ended
    Client again(server_->port(), TestCerts().a.ca_pem);
    served = again.Handshake();
  }
  EXPECT_TRUE(served);
}

TEST_F(ServerTest, CertificateIsSwappedForNewConnections) {
  Start();
  auto old_conn = Connect();
  EXPECT_EQ(old_conn->PeerCert(), TestCerts().a.cert_pem);
  ASSERT_TRUE(server_->SetCertificate(TestCerts().b.cert_pem, TestCerts().b.key_pem).ok());
  auto fresh = Connect(TestCerts().b.ca_pem);
  EXPECT_EQ(fresh->PeerCert(), TestCerts().b.cert_pem);
  // The old connection keeps working.
  ASSERT_TRUE(old_conn->Send(Post("/echo", "1")));
  EXPECT_EQ(old_conn->ReadResponse().substr(0, 12), "HTTP/1.1 200");
  // A key that does not match is refused and the current certificate stays.
  EXPECT_FALSE(server_->SetCertificate(TestCerts().a.cert_pem, TestCerts().b.key_pem).ok());
  EXPECT_EQ(Connect(TestCerts().b.ca_pem)->PeerCert(), TestCerts().b.cert_pem);
}

TEST(HttpsServer, RefusesBadConfigAndCertificates) {
  HttpsServerConfig config;
  config.address = "127.0.0.1:0";
  auto h = [](const HttpRequest&) { return HttpReply{}; };
  EXPECT_FALSE(HttpsServer::Start(config, h, "not pem", TestCerts().a.key_pem).ok());
  EXPECT_FALSE(HttpsServer::Start(config, h, TestCerts().a.cert_pem, TestCerts().b.key_pem).ok());
  config.address = "no-port";
  EXPECT_EQ(
      HttpsServer::Start(config, h, TestCerts().a.cert_pem, TestCerts().a.key_pem).status().code(),
      StatusCode::kInvalidArgument);
  config.address = "127.0.0.1:0";
  config.max_connections = 0;
  EXPECT_FALSE(HttpsServer::Start(config, h, TestCerts().a.cert_pem, TestCerts().a.key_pem).ok());
}

}  // namespace
}  // namespace tw::op
