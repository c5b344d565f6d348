#include "tw/operator/kube_config.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace tw::op {
namespace {

constexpr char kKubeconfig[] = R"(apiVersion: v1
kind: Config
current-context: test
clusters:
- name: fake
  cluster:
    server: http://127.0.0.1:6443/
    insecure-skip-tls-verify: true
- name: secure
  cluster:
    server: https://10.0.0.1
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
contexts:
- name: test
  context:
    cluster: fake
    user: tester
    namespace: inference
- name: other
  context:
    cluster: secure
    user: certuser
users:
- name: tester
  user:
    token: s3cret
- name: certuser
  user:
    client-certificate: certs/client.crt
    client-key-data: a2V5
)";

TEST(KubeConfigTest, CurrentContextWithToken) {
  auto c = ParseKubeconfig(kKubeconfig, "/nowhere");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "http://127.0.0.1:6443");
  EXPECT_EQ(c->token, "s3cret");
  EXPECT_TRUE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->default_namespace, "inference");
  EXPECT_TRUE(c->ca_pem.empty());
}

TEST(KubeConfigTest, NamedContextWithCertificatesFromFileAndData) {
  auto dir =
      std::filesystem::temp_directory_path() / ("kubeconfig_test_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir / "certs");
  std::ofstream(dir / "certs/client.crt") << "CERT";
  auto c = ParseKubeconfig(kKubeconfig, dir.string(), "other");
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://10.0.0.1");
  EXPECT_EQ(c->ca_pem, "-----BEGIN CERTIFICATE-----\n");
  EXPECT_EQ(c->client_cert_pem, "CERT");
  EXPECT_EQ(c->client_key_pem, "key");
  EXPECT_FALSE(c->insecure_skip_tls_verify);
}

TEST(KubeConfigTest, Errors) {
  EXPECT_FALSE(ParseKubeconfig(kKubeconfig, "/", "missing").ok());
  EXPECT_FALSE(ParseKubeconfig("{ not: [yaml", "/").ok());
  EXPECT_FALSE(LoadKubeconfig("/nonexistent/kubeconfig").ok());
}

TEST(KubeConfigTest, InCluster) {
  auto root = std::filesystem::temp_directory_path() / ("incluster_" + std::to_string(getpid()));
  auto sa = root / "var/run/secrets/kubernetes.io/serviceaccount";
  std::filesystem::create_directories(sa);
  std::ofstream(sa / "token") << "tok";
  std::ofstream(sa / "ca.crt") << "CA";
  std::ofstream(sa / "namespace") << "tw-system\n";
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto c = InClusterConfig(root.string());
  unsetenv("KUBERNETES_SERVICE_HOST");
  auto missing = InClusterConfig(root.string());
  std::filesystem::remove_all(root);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://10.96.0.1:443");
  EXPECT_EQ(c->token, "tok");
  EXPECT_EQ(c->ca_pem, "CA");
  EXPECT_EQ(c->default_namespace, "tw-system");
  EXPECT_FALSE(missing.ok());
}

}  // namespace
}  // namespace tw::op
