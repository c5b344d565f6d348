// KubeConfig: where the Kubernetes API server is and how to authenticate to it.
//
// Two sources, as client-go has them: a kubeconfig file (current context; token, token file,
// client certificate and key, CA, insecure-skip-tls-verify; file paths or inline base64
// data) and the in-cluster service account (KUBERNETES_SERVICE_HOST/PORT, the token file
// and CA under /var/run/secrets/kubernetes.io/serviceaccount). Plain values, no threading
// rules; the bearer token file is re-read by the client (bound tokens rotate).
#pragma once

#include <string>
#include <string_view>

#include "tw/common/status.h"

namespace tw::op {

struct KubeConfig {
  // Base URL of the API server, "https://10.0.0.1:443" or "http://127.0.0.1:8080".
  std::string server;
  // Static bearer token ("" = none).
  std::string token;
  // File holding the bearer token, re-read periodically ("" = none). Wins over `token`.
  std::string token_file;
  // PEM CA bundle that signs the server's certificate ("" = system roots).
  std::string ca_pem;
  // PEM client certificate and key for mutual TLS ("" = none).
  std::string client_cert_pem;
  std::string client_key_pem;
  // Skip server certificate verification (tests only).
  bool insecure_skip_tls_verify = false;
  // The context's default namespace ("" when none is given).
  std::string default_namespace;
  // User-Agent header of every request.
  std::string user_agent = "tw-operator/0.1";
};

// Reads a kubeconfig file and resolves its current context (or `context` when not empty).
// Relative certificate paths are taken relative to the file's directory.
StatusOr<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& context = "");
// Parses kubeconfig YAML text; `base_dir` resolves relative paths.
StatusOr<KubeConfig> ParseKubeconfig(const std::string& yaml, const std::string& base_dir,
                                     const std::string& context = "");

// Base64 (RFC 4648; the URL-safe alphabet and missing padding are accepted when decoding).
// Decode errors name `field`.
StatusOr<std::string> Base64Decode(std::string_view in, std::string_view field);
std::string Base64Encode(std::string_view in);

// The in-cluster configuration. `root` replaces "/" for tests.
StatusOr<KubeConfig> InClusterConfig(const std::string& root = "");

}  // namespace tw::op
