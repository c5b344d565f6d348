// KubeClient over TLS: server verification with a CA, mutual TLS with a client certificate,
// insecure-skip-tls-verify, and refusal of an unknown CA. The server is a few lines of Python
// (stdlib ssl) on loopback; certificates come from the openssl command line.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "tw/operator/kube_client.h"

// cpprestsdk's TLS engine runs on its process-wide thread pool, which is never joined; the
// OpenSSL per-connection state those threads still hold at exit is reported by LeakSanitizer.
// It is not ours and not growing (one per pooled connection), so it is suppressed here.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libcpprest.so\nleak:libcrypto.so\nleak:libssl.so\n";
}

namespace tw::op {
namespace {

constexpr char kServer[] = R"(
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"x"},"auth":"%s"}' % (
            self.headers.get("Authorization", "").encode())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
d = sys.argv[1]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(d + "/server.crt", d + "/server.key")
ctx.load_verify_locations(d + "/ca.crt")
ctx.verify_mode = ssl.CERT_REQUIRED
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(d + "/port.tmp", "w").write(str(srv.server_address[1]))
import os; os.replace(d + "/port.tmp", d + "/port")
srv.serve_forever()
)";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tw_tls_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::string d = dir_;
    auto run = [](const std::string& cmd) {
      return std::system((cmd + " >/dev/null 2>&1").c_str());
    };
    // A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it, and
    // a second CA that signed nothing.
    ASSERT_EQ(run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout " +
                  d + "/ca.key -out " + d + "/ca.crt"),
              0);
    ASSERT_EQ(run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout " +
                  d + "/other.key -out " + d + "/other.crt"),
              0);
    std::ofstream(d + "/san.ext") << "subjectAltName=IP:127.0.0.1\n";
    ASSERT_EQ(run("openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout " + d +
                  "/server.key -out " + d + "/server.csr"),
              0);
    ASSERT_EQ(
        run("openssl x509 -req -days 2 -in " + d + "/server.csr -CA " + d + "/ca.crt -CAkey " + d +
            "/ca.key -CAcreateserial -extfile " + d + "/san.ext -out " + d + "/server.crt"),
        0);
    ASSERT_EQ(run("openssl req -newkey rsa:2048 -nodes -subj /CN=tw-operator -keyout " + d +
                  "/client.key -out " + d + "/client.csr"),
              0);
    ASSERT_EQ(run("openssl x509 -req -days 2 -in " + d + "/client.csr -CA " + d +
                  "/ca.crt -CAkey " + d + "/ca.key -CAcreateserial -out " + d + "/client.crt"),
              0);
    std::ofstream(d + "/server.py") << kServer;
    pid_ = fork();
    if (pid_ == 0) {
      execl("/usr/bin/python3", "/usr/bin/python3", (d + "/server.py").c_str(), d.c_str(), nullptr);
      _exit(127);
    }
    for (int i = 0; i < 400 && port_.empty(); ++i) {
      port_ = ReadFile(d + "/port");
      if (port_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ASSERT_FALSE(port_.empty()) << "TLS test server did not start";
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status;
      waitpid(pid_, &status, 0);
    }
    std::filesystem::remove_all(dir_);
  }
  KubeConfig Base() {
    KubeConfig c;
    c.server = "https://127.0.0.1:" + port_;
    c.token = "tok";
    c.client_cert_pem = ReadFile(dir_ + "/client.crt");
    c.client_key_pem = ReadFile(dir_ + "/client.key");
    return c;
  }
  StatusOr<Json> GetWith(const KubeConfig& c) {
    auto client = KubeClient::Create(c);
    if (!client.ok()) return client.status();
    return (*client)->Get(kinds::kConfigMap, "default", "x");
  }

  std::string dir_;
  std::string port_;
  pid_t pid_ = -1;
};

TEST_F(TlsTest, VerifiesTheServerWithTheCaAndPresentsTheClientCertificate) {
  KubeConfig c = Base();
  c.ca_pem = ReadFile(dir_ + "/ca.crt");
  auto got = GetWith(c);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)["metadata"]["name"], "x");
  EXPECT_EQ((*got)["auth"], "Bearer tok");
}

TEST_F(TlsTest, InsecureSkipVerify) {
  KubeConfig c = Base();
  c.insecure_skip_tls_verify = true;
  auto got = GetWith(c);
  EXPECT_TRUE(got.ok()) << got.status().ToString();
}

TEST_F(TlsTest, RefusesAServerSignedByAnotherCa) {
  KubeConfig c = Base();
  c.ca_pem = ReadFile(dir_ + "/other.crt");
  auto got = GetWith(c);
  EXPECT_FALSE(got.ok());
}

TEST_F(TlsTest, ServerRefusesAClientWithoutCertificate) {
  KubeConfig c = Base();
  c.ca_pem = ReadFile(dir_ + "/ca.crt");
  c.client_cert_pem.clear();
  c.client_key_pem.clear();
  auto got = GetWith(c);
  EXPECT_FALSE(got.ok());
}

}  // namespace
}  // namespace tw::op
