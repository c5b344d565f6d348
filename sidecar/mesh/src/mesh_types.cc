#include "tw/mesh/mesh_types.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <cstring>
#include <memory>

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
  // The SHA-256 implementation fetched once (OpenSSL 3 looks it up again on every
  // EVP_sha256() digest) and one digest context per thread: a lookup computes hundreds.
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  thread_local std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                           EVP_MD_CTX_free);
  Key out;
  unsigned int n = 0;
  if (md == nullptr || ctx == nullptr || EVP_DigestInit_ex2(ctx.get(), md, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), in, sizeof in) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out.bytes.data(), &n) != 1 || n != 32) {
    std::abort();  // only on allocation failure inside OpenSSL; a zero key would misplace
  }
  return out;
}

}  // namespace tw::mesh
