#include "grpc_util.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tw/common/strings.h"

namespace tw::mesh {

namespace {

StatusOr<std::string> ReadPem(const std::string& path, const char* field) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return InvalidArgumentError(StrCat(field, ": cannot read ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream s;
  s << in.rdbuf();
  std::string pem = s.str();
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return InvalidArgumentError(StrCat(field, ": ", path, " holds no PEM block"));
  }
  return pem;
}

}  // namespace

StatusOr<PeerTls> LoadPeerTls(const config::MeshTlsConfig& config) {
  PeerTls tls;
  if (config.ca.empty() && config.cert.empty() && config.key.empty()) return tls;
  TW_ASSIGN_OR_RETURN(tls.ca_pem, ReadPem(config.ca, "mesh.tls.ca"));
  TW_ASSIGN_OR_RETURN(tls.cert_pem, ReadPem(config.cert, "mesh.tls.cert"));
  TW_ASSIGN_OR_RETURN(tls.key_pem, ReadPem(config.key, "mesh.tls.key"));
  tls.server_name = config.server_name;
  return tls;
}

namespace net {

Status FromGrpc(const grpc::Status& status, const std::string& what) {
  if (status.ok()) return OkStatus();
  const int code = static_cast<int>(status.error_code());
  StatusCode ours;
  switch (code) {
    case 1:
    case 3:
    case 4:
    case 5:
    case 6:
    case 7:
    case 8:
    case 9:
    case 12:
    case 13:
    case 14:
    case 15:
      ours = static_cast<StatusCode>(code);
      break;
    default:
      ours = StatusCode::kUnavailable;
  }
  return Status(ours, StrCat(what, ": ", status.error_message()));
}

StatusOr<Key> KeyField(const std::string& raw, const char* field) {
  auto k = Key::FromBytes(raw);
  if (!k.ok()) return InvalidArgumentError(StrCat(field, ": must be 32 bytes, is ", raw.size()));
  return *k;
}

std::string Target(const std::string& address, uint32_t port) {
  if (address.find(':') != std::string::npos && address.front() != '[') {
    return StrCat("[", address, "]:", port);
  }
  return StrCat(address, ":", port);
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const PeerTls& tls) {
  if (!tls.enabled()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = tls.ca_pem;
  o.pem_cert_chain = tls.cert_pem;
  o.pem_private_key = tls.key_pem;
  return grpc::SslCredentials(o);
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const PeerTls& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions o(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  o.pem_root_certs = tls.ca_pem;
  o.pem_key_cert_pairs.push_back({tls.key_pem, tls.cert_pem});
  return grpc::SslServerCredentials(o);
}

}  // namespace net
}  // namespace tw::mesh
