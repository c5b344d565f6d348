#include "tw/mesh/mesh_types.h"

#include <openssl/evp.h>

#include <cstdlib>
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
  // Fetched once: EVP_sha256() makes OpenSSL 3 look the implementation up on every digest,
  // which cost a 512-chunk remote lookup more than the hashing itself.
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  Key out;
  unsigned int n = 0;
  if (sha256 == nullptr ||
      EVP_Digest(in, sizeof in, out.bytes.data(), &n, sha256, nullptr) != 1 || n != 32) {
    std::abort();  // only on allocation failure inside OpenSSL; a zero key would misplace
  }
  return out;
}

}  // namespace tw::mesh
