#include "tw/operator/kube_config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "tw/common/strings.h"
#include "yaml-cpp/yaml.h"

namespace tw::op {
namespace {

constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";

StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(StrCat("cannot read ", path));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string Resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || base_dir.empty()) return path;
  return base_dir + "/" + path;
}

// Picks `data_key` (inline base64) or `file_key` (a path) of `node`.
StatusOr<std::string> DataOrFile(const YAML::Node& node, const char* data_key, const char* file_key,
                                 const std::string& base_dir) {
  if (node[data_key]) return Base64Decode(node[data_key].as<std::string>(), data_key);
  if (node[file_key]) return ReadWholeFile(Resolve(base_dir, node[file_key].as<std::string>()));
  return std::string();
}

YAML::Node FindNamed(const YAML::Node& list, const std::string& name, const char* inner) {
  if (!list || !list.IsSequence()) return YAML::Node();
  for (const auto& item : list) {
    if (item["name"] && item["name"].as<std::string>() == name) return item[inner];
  }
  return YAML::Node();
}

}  // namespace

StatusOr<std::string> Base64Decode(std::string_view in, std::string_view field) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r' || c == ' ') continue;
    int v = value(c);
    if (v < 0) return InvalidArgumentError(StrCat(field, ": not base64"));
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::string Base64Encode(std::string_view in) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v =
        (uint32_t(uint8_t(in[i])) << 16) | (uint32_t(uint8_t(in[i + 1])) << 8) | uint8_t(in[i + 2]);
    for (int s : {18, 12, 6, 0}) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  if (i < in.size()) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    if (i + 1 < in.size()) v |= uint32_t(uint8_t(in[i + 1])) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

StatusOr<KubeConfig> ParseKubeconfig(const std::string& yaml, const std::string& base_dir,
                                     const std::string& context) {
  try {
    YAML::Node root = YAML::Load(yaml);
    std::string ctx_name = context;
    if (ctx_name.empty() && root["current-context"]) {
      ctx_name = root["current-context"].as<std::string>();
    }
    YAML::Node ctx = FindNamed(root["contexts"], ctx_name, "context");
    if (!ctx) return InvalidArgumentError(StrCat("kubeconfig: no context \"", ctx_name, "\""));
    KubeConfig out;
    if (ctx["namespace"]) out.default_namespace = ctx["namespace"].as<std::string>();
    std::string cluster_name = ctx["cluster"] ? ctx["cluster"].as<std::string>() : "";
    YAML::Node cluster = FindNamed(root["clusters"], cluster_name, "cluster");
    if (!cluster || !cluster["server"]) {
      return InvalidArgumentError(StrCat("kubeconfig: no cluster \"", cluster_name, "\""));
    }
    out.server = cluster["server"].as<std::string>();
    while (!out.server.empty() && out.server.back() == '/') out.server.pop_back();
    if (cluster["insecure-skip-tls-verify"]) {
      out.insecure_skip_tls_verify = cluster["insecure-skip-tls-verify"].as<bool>();
    }
    TW_ASSIGN_OR_RETURN(out.ca_pem, DataOrFile(cluster, "certificate-authority-data",
                                               "certificate-authority", base_dir));
    std::string user_name = ctx["user"] ? ctx["user"].as<std::string>() : "";
    YAML::Node user = FindNamed(root["users"], user_name, "user");
    if (user) {
      if (user["token"]) out.token = user["token"].as<std::string>();
      if (user["tokenFile"])
        out.token_file = Resolve(base_dir, user["tokenFile"].as<std::string>());
      TW_ASSIGN_OR_RETURN(out.client_cert_pem, DataOrFile(user, "client-certificate-data",
                                                          "client-certificate", base_dir));
      TW_ASSIGN_OR_RETURN(out.client_key_pem,
                          DataOrFile(user, "client-key-data", "client-key", base_dir));
    }
    return out;
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(StrCat("kubeconfig: ", e.what()));
  }
}

StatusOr<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& context) {
  TW_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  std::string dir = ".";
  if (auto slash = path.rfind('/'); slash != std::string::npos) dir = path.substr(0, slash);
  auto parsed = ParseKubeconfig(text, dir, context);
  if (!parsed.ok()) return parsed.status().WithPrefix(path);
  return parsed;
}

StatusOr<KubeConfig> InClusterConfig(const std::string& root) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr || *host == '\0') {
    return FailedPreconditionError(
        "not running in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set");
  }
  std::string dir = root + kServiceAccountDir;
  KubeConfig out;
  std::string h = host;
  if (h.find(':') != std::string::npos) h = StrCat("[", h, "]");  // IPv6
  out.server = StrCat("https://", h, ":", port);
  out.token_file = dir + "/token";
  TW_ASSIGN_OR_RETURN(out.token, ReadWholeFile(out.token_file));
  TW_ASSIGN_OR_RETURN(out.ca_pem, ReadWholeFile(dir + "/ca.crt"));
  auto ns = ReadWholeFile(dir + "/namespace");
  if (ns.ok()) out.default_namespace = std::string(StripWhitespace(*ns));
  return out;
}

}  // namespace tw::op
