#include "tw/mesh/mesh_types.h"

#include <openssl/evp.h>

#include <cstring>

namespace tw::mesh {

std::string_view ToString(UpdateKind kind) {
  switch (kind) {
    case UpdateKind::kAnnounce:
      return "announce";
    case UpdateKind::kWithdraw:
      return "withdraw";
  }
  return "unknown";
}

Key DirectoryKey(const Key& namespace_digest, const Key& key) {
  static constexpr char kLabel[] = "tokenwarehouse/dir/v1";
  uint8_t in[sizeof(kLabel) - 1 + 64];
  std::memcpy(in, kLabel, sizeof(kLabel) - 1);
  std::memcpy(in + sizeof(kLabel) - 1, namespace_digest.bytes.data(), 32);
  std::memcpy(in + sizeof(kLabel) - 1 + 32, key.bytes.data(), 32);
  Key out;
  unsigned int n = 0;
  EVP_Digest(in, sizeof in, out.bytes.data(), &n, EVP_sha256(), nullptr);
  return out;
}

}  // namespace tw::mesh
