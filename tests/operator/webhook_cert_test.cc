// The pod webhook's certificates: generation and verification (DNS and IP names, the wrong
// host, expiry), the rotation rule, and WebhookCertSync + Webhook against the fake API server
// with an injected clock: the Secret is created, the caBundle written, the same certificate
// kept while it is young, and after two thirds of a short validity a new CA and certificate
// are made, the bundle trusts old and new, and the running server presents the new one.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fake_cluster.h"
#include "gtest/gtest.h"
#include "tw/operator/kube_config.h"
#include "tw/operator/webhook.h"
#include "tw/operator/webhook_cert_sync.h"
#include "tw/operator/webhook_certs.h"

namespace tw::op {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
using testing::FakeCluster;

const SystemTime kNow = std::chrono::system_clock::from_time_t(1800000000);

TEST(WebhookCerts, GeneratedCertificateVerifies) {
  auto cert = GenerateServingCert({"svc.ns.svc", "127.0.0.1"}, kNow, hours(24));
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  EXPECT_TRUE(VerifyServingCert(*cert, "svc.ns.svc", kNow).ok());
  EXPECT_TRUE(VerifyServingCert(*cert, "127.0.0.1", kNow + hours(23)).ok());
  EXPECT_FALSE(VerifyServingCert(*cert, "other.ns.svc", kNow).ok());
  EXPECT_FALSE(VerifyServingCert(*cert, "127.0.0.2", kNow).ok());
  EXPECT_FALSE(VerifyServingCert(*cert, "svc.ns.svc", kNow + hours(25)).ok()) << "expired";
  auto info = InspectCert(cert->cert_pem);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->hosts, (std::vector<std::string>{"svc.ns.svc", "127.0.0.1"}));
  EXPECT_EQ(info->not_after, kNow + hours(24));

  auto other = GenerateServingCert({"svc.ns.svc"}, kNow, hours(24));
  ServingCert mixed = *cert;
  mixed.key_pem = other->key_pem;
  EXPECT_FALSE(VerifyServingCert(mixed, "svc.ns.svc", kNow).ok()) << "key of another cert";
  mixed = *cert;
  mixed.ca_pem = other->ca_pem;
  EXPECT_FALSE(VerifyServingCert(mixed, "svc.ns.svc", kNow).ok()) << "signed by another CA";

  EXPECT_FALSE(GenerateServingCert({}, kNow, hours(1)).ok());
  EXPECT_FALSE(GenerateServingCert({"x"}, kNow, seconds(1)).ok());
}

TEST(WebhookCerts, RotationRule) {
  const std::vector<std::string> hosts = {"svc.ns.svc"};
  auto cert = *GenerateServingCert(hosts, kNow, hours(30));
  EXPECT_EQ(RotationReason(cert, hosts, kNow), "");
  EXPECT_EQ(RotationReason(cert, hosts, kNow + hours(19)), "");
  EXPECT_NE(RotationReason(cert, hosts, kNow + hours(20) + minutes(1)), "");
  EXPECT_NE(RotationReason(cert, {"svc.ns.svc", "new.ns.svc"}, kNow), "");
  EXPECT_NE(RotationReason({"", "garbage", ""}, hosts, kNow), "");
}

TEST(WebhookCerts, KeepUnexpired) {
  auto a = *GenerateServingCert({"x"}, kNow, hours(1));
  auto b = *GenerateServingCert({"x"}, kNow, hours(3));
  EXPECT_EQ(KeepUnexpired(a.ca_pem + b.ca_pem, kNow), a.ca_pem + b.ca_pem);
  EXPECT_EQ(KeepUnexpired(a.ca_pem + b.ca_pem, kNow + hours(2)), b.ca_pem);
  EXPECT_EQ(KeepUnexpired("", kNow), "");
}

// The PEM certificate the server on `port` presents; verified against `ca_pem` for 127.0.0.1
// at the wall clock's time unless `ca_pem` is empty ("" when the handshake fails).
std::string PresentedCert(int port, const std::string& ca_pem) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  BIO* bio = BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size()));
  while (X509* c = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), c);
    X509_free(c);
  }
  ERR_clear_error();
  BIO_free(bio);
  SSL_CTX_set_verify(ctx, ca_pem.empty() ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nullptr);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  SSL* ssl = SSL_new(ctx);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    SSL_set_fd(ssl, fd);
    SSL_set1_host(ssl, "127.0.0.1");
    if (SSL_connect(ssl) == 1) {
      X509* c = SSL_get1_peer_certificate(ssl);
      BIO* b = BIO_new(BIO_s_mem());
      PEM_write_bio_X509(b, c);
      char* data = nullptr;
      long n = BIO_get_mem_data(b, &data);
      out.assign(data, static_cast<size_t>(n));
      BIO_free(b);
      X509_free(c);
    }
  }
  ERR_clear_error();
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ::close(fd);
  return out;
}

class CertSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.ok());
    ASSERT_TRUE(cluster_.client()
                    .Create(kinds::kMutatingWebhookConfiguration, "",
                            {{"apiVersion", "admissionregistration.k8s.io/v1"},
                             {"kind", "MutatingWebhookConfiguration"},
                             {"metadata", {{"name", "tw-pod-webhook"}}},
                             {"webhooks",
                              Json::array({{{"name", "pods.tokenwarehouse.io"},
                                            {"clientConfig", {{"url", "https://x"}}}},
                                           {{"name", "second.tokenwarehouse.io"},
                                            {"clientConfig",
                                             {{"url", "https://y"}, {"caBundle", "c3RhbGU="}}}}})}})
                    .ok());
    config_.secret_namespace = "tw-system";
    config_.secret_name = "tw-pod-webhook-cert";
    config_.webhook_config_name = "tw-pod-webhook";
    config_.hosts = {"tw-pod-webhook.tw-system.svc", "127.0.0.1"};
    config_.validity = minutes(30);
  }
  // The Secret's field, decoded.
  std::string SecretField(const char* key) {
    auto s = cluster_.client().Get(kinds::kSecret, "tw-system", "tw-pod-webhook-cert");
    if (!s.ok()) return "";
    return *Base64Decode((*s)["data"].value(key, ""), key);
  }
  std::vector<std::string> CaBundles() {
    std::vector<std::string> out;
    auto m = cluster_.client().Get(kinds::kMutatingWebhookConfiguration, "", "tw-pod-webhook");
    for (const auto& w : (*m)["webhooks"]) {
      out.push_back(*Base64Decode(w["clientConfig"].value("caBundle", ""), "caBundle"));
    }
    return out;
  }

  FakeCluster cluster_;
  WebhookCertConfig config_;
};

TEST_F(CertSyncTest, CreatesKeepsAndRotates) {
  WebhookCertSync sync(&cluster_.client(), config_);
  auto first = sync.Sync(kNow);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(SecretField("tls.crt"), first->cert_pem);
  EXPECT_EQ(SecretField("tls.key"), first->key_pem);
  EXPECT_EQ(SecretField("ca.crt"), first->ca_pem);
  auto secret = cluster_.client().Get(kinds::kSecret, "tw-system", "tw-pod-webhook-cert");
  EXPECT_EQ((*secret)["type"], "kubernetes.io/tls");
  ASSERT_TRUE(sync.EnsureCaBundle(first->ca_pem).ok());
  EXPECT_EQ(CaBundles(), (std::vector<std::string>{first->ca_pem, first->ca_pem}));
  ASSERT_TRUE(sync.EnsureCaBundle(first->ca_pem).ok());  // nothing to change: no patch

  // Young: the same certificate, read back from the Secret (what another replica sees).
  WebhookCertSync replica(&cluster_.client(), config_);
  auto again = replica.Sync(kNow + minutes(19));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->cert_pem, first->cert_pem);

  // Past two thirds of 30 minutes: a new CA and certificate; the bundle trusts both.
  const SystemTime later = kNow + minutes(21);
  auto rotated = replica.Sync(later);
  ASSERT_TRUE(rotated.ok()) << rotated.status().ToString();
  EXPECT_NE(rotated->cert_pem, first->cert_pem);
  EXPECT_EQ(SecretField("tls.crt"), rotated->cert_pem);
  EXPECT_EQ(rotated->ca_pem.find(first->ca_pem), rotated->ca_pem.size() - first->ca_pem.size())
      << "the previous CA must follow the new one";
  EXPECT_TRUE(VerifyServingCert(*rotated, "127.0.0.1", later).ok());
  ServingCert old_with_new_bundle = *first;
  old_with_new_bundle.ca_pem = rotated->ca_pem;
  EXPECT_TRUE(VerifyServingCert(old_with_new_bundle, "127.0.0.1", later).ok());
  ASSERT_TRUE(replica.EnsureCaBundle(rotated->ca_pem).ok());
  EXPECT_EQ(CaBundles(), (std::vector<std::string>{rotated->ca_pem, rotated->ca_pem}));
  EXPECT_EQ(sync.Sync(later)->cert_pem, rotated->cert_pem) << "the first replica follows";

  // After the old CA has expired, the next rotation drops it.
  auto third = replica.Sync(kNow + minutes(45));
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->ca_pem.find(first->ca_pem), std::string::npos);
}

TEST_F(CertSyncTest, HostChangeRotatesAndMissingConfigurationIsNotFound) {
  WebhookCertSync sync(&cluster_.client(), config_);
  auto first = sync.Sync(kNow);
  ASSERT_TRUE(first.ok());
  config_.hosts.push_back("tw-pod-webhook.tw-system.svc.cluster.local");
  config_.webhook_config_name = "absent";
  WebhookCertSync renamed(&cluster_.client(), config_);
  auto second = renamed.Sync(kNow + minutes(1));
  ASSERT_TRUE(second.ok());
  EXPECT_NE(second->cert_pem, first->cert_pem);
  EXPECT_EQ(renamed.EnsureCaBundle(second->ca_pem).code(), StatusCode::kNotFound);
}

class NoWarehouses : public WarehouseSource {
 public:
  std::shared_ptr<const Json> Get(std::string_view, std::string_view) const override {
    return nullptr;
  }
  std::vector<std::shared_ptr<const Json>> List() const override { return {}; }
  bool Synced() const override { return true; }
};

TEST_F(CertSyncTest, ServerPresentsTheRotatedCertificate) {
  WebhookOptions options;
  options.server.address = "127.0.0.1:0";
  options.certs = config_;
  const SystemTime base = std::chrono::system_clock::now();
  std::atomic<int64_t> minutes_later{0};
  NoWarehouses none;
  Webhook webhook(&cluster_.client(), &none, options,
                  [&] { return base + minutes(minutes_later.load()); });
  EXPECT_FALSE(webhook.Serving());
  ASSERT_TRUE(webhook.RefreshCertificate().ok());
  ASSERT_TRUE(webhook.Serving());
  const std::string first = SecretField("tls.crt");
  EXPECT_EQ(PresentedCert(webhook.port(), CaBundles()[0]), first)
      << "the certificate must verify with the caBundle";
  minutes_later = 10;
  ASSERT_TRUE(webhook.RefreshCertificate().ok());
  EXPECT_EQ(PresentedCert(webhook.port(), ""), first) << "young: kept";
  minutes_later = 21;
  ASSERT_TRUE(webhook.RefreshCertificate().ok());
  const std::string second = SecretField("tls.crt");
  EXPECT_NE(second, first);
  EXPECT_EQ(PresentedCert(webhook.port(), ""), second) << "the server did not reload";
  EXPECT_EQ(CaBundles()[0], SecretField("ca.crt"));
  webhook.Stop();
  EXPECT_FALSE(webhook.Serving());
}

}  // namespace
}  // namespace tw::op
