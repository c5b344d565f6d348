#include "tw/common/keys.h"

#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <map>

#include "tw/common/strings.h"

namespace tw {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

constexpr std::string_view kNsDomain = "tokenwarehouse/ns/v1";
constexpr std::string_view kChunkDomain = "tokenwarehouse/chunk/v1";

// A SHA-256 context on OpenSSL's EVP interface (which uses the CPU's SHA extensions).
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  void Update(std::string_view s) { Update(s.data(), s.size()); }
  void UpdateU32(uint32_t v) {
    uint8_t b[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8),
                    static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 24)};
    Update(b, 4);
  }
  Key Final() {
    Key k;
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, k.bytes.data(), &len);
    return k;
  }

 private:
  EVP_MD_CTX* ctx_;
};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool ParseDecimal(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  for (char c : s) {
    if (!IsDigit(c)) return false;
  }
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::string NormalizeDtype(std::string_view in) {
  std::string s = ToLower(StripWhitespace(in));
  if (s.starts_with("torch.")) s = s.substr(6);
  static const std::map<std::string, std::string, std::less<>> kAliases = {
      {"bfloat16", "bf16"},          {"float16", "fp16"},        {"half", "fp16"},
      {"float32", "fp32"},           {"float", "fp32"},          {"fp8", "fp8_e4m3"},
      {"float8_e4m3fn", "fp8_e4m3"}, {"fp8_e4m3fn", "fp8_e4m3"}, {"float8_e4m3", "fp8_e4m3"},
      {"float8_e5m2", "fp8_e5m2"},   {"uint8", "uint8"},         {"int8", "int8"},
  };
  auto it = kAliases.find(s);
  return it == kAliases.end() ? s : it->second;
}

StatusOr<std::string> NormalizeParallel(std::string_view in) {
  std::string s;
  for (char c : in) {
    if (!(c == ' ' || c == '\t')) s.push_back(c);
  }
  std::string tp = "0/1", pp = "0/1";
  std::map<std::string, std::string> extra;
  std::vector<std::string> seen;
  if (!s.empty()) {
    for (std::string_view item : Split(s, ',')) {
      std::vector<std::string_view> kv = SplitOnce(item, '=');
      if (kv.size() != 2 || kv[0].empty() || kv[1].empty()) {
        return InvalidArgumentError(StrCat(
            "parallel: item \"", item, "\" is not name=value (expected e.g. \"tp=0/8,pp=0/1\")"));
      }
      std::string name = ToLower(kv[0]);
      if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
        return InvalidArgumentError(StrCat("parallel: item \"", name, "\" given twice"));
      }
      seen.push_back(name);
      if (name == "tp" || name == "pp") {
        std::vector<std::string_view> rn = Split(kv[1], '/');
        uint64_t r = 0, n = 0;
        if (rn.size() != 2 || !ParseDecimal(rn[0], r) || !ParseDecimal(rn[1], n) || n == 0 ||
            r >= n) {
          return InvalidArgumentError(StrCat("parallel: \"", item, "\" must be ", name,
                                             "=RANK/SIZE with 0 <= RANK < SIZE"));
        }
        (name == "tp" ? tp : pp) = StrCat(r, "/", n);
      } else {
        extra[name] = std::string(kv[1]);
      }
    }
  }
  std::string out = StrCat("tp=", tp, ",pp=", pp);
  for (const auto& [k, v] : extra) StrAppend(&out, ",", k, "=", v);
  return out;
}

}  // namespace

const std::array<std::string_view, kNamespaceFieldCount> kNamespaceFieldNames = {
    "model",    "model_revision", "tokenizer", "kv_dtype",    "kv_layout",
    "parallel", "adapter",        "tenant",    "chunk_tokens"};

const std::array<std::string Namespace::*, kNamespaceFieldCount> kNamespaceFields = {
    &Namespace::model,    &Namespace::model_revision, &Namespace::tokenizer,
    &Namespace::kv_dtype, &Namespace::kv_layout,      &Namespace::parallel,
    &Namespace::adapter,  &Namespace::tenant,         &Namespace::chunk_tokens};

std::string Key::Hex() const { return HexEncode(bytes); }

StatusOr<Key> Key::FromHex(std::string_view hex) {
  if (hex.size() != 64) {
    return InvalidArgumentError(
        StrCat("key: expected 64 hex digits, got ", hex.size(), " characters"));
  }
  TW_ASSIGN_OR_RETURN(std::vector<uint8_t> raw, HexDecode(hex));
  Key k;
  std::copy(raw.begin(), raw.end(), k.bytes.begin());
  return k;
}

StatusOr<Key> Key::FromBytes(std::string_view raw) {
  if (raw.size() != 32) {
    return InvalidArgumentError(StrCat("key: expected 32 bytes, got ", raw.size()));
  }
  Key k;
  std::copy(raw.begin(), raw.end(), k.bytes.begin());
  return k;
}

bool Key::IsZero() const {
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

Key NamespaceDigest(const Namespace& ns) {
  Sha256 h;
  h.Update(kNsDomain);
  for (size_t i = 0; i < kNamespaceFieldCount; ++i) {
    const std::string& f = ns.*kNamespaceFields[i];
    uint8_t tag = static_cast<uint8_t>(i + 1);
    h.Update(&tag, 1);
    h.UpdateU32(static_cast<uint32_t>(f.size()));
    h.Update(f);
  }
  return h.Final();
}

StatusOr<Namespace> NormalizeNamespace(const Namespace& ns) {
  Namespace out = ns;
  out.kv_dtype = NormalizeDtype(ns.kv_dtype);
  TW_ASSIGN_OR_RETURN(out.parallel, NormalizeParallel(ns.parallel));
  TW_ASSIGN_OR_RETURN(uint32_t ct, ChunkTokens(ns));
  out.chunk_tokens = StrCat(ct);
  return out;
}

StatusOr<uint32_t> ChunkTokens(const Namespace& ns) {
  std::string_view s = StripWhitespace(ns.chunk_tokens);
  uint64_t v = 0;
  if (!ParseDecimal(s, v) || v == 0 || v > (1u << 20)) {
    return InvalidArgumentError(
        StrCat("chunk_tokens: \"", ns.chunk_tokens, "\" is not a token count in 1..1048576"));
  }
  return static_cast<uint32_t>(v);
}

Key ChunkKey(const Key& parent, std::span<const uint8_t> extra, std::span<const uint32_t> tokens) {
  Sha256 h;
  h.Update(kChunkDomain);
  h.Update(parent.bytes.data(), parent.bytes.size());
  h.UpdateU32(static_cast<uint32_t>(extra.size()));
  h.Update(extra.data(), extra.size());
  if constexpr (std::endian::native == std::endian::little) {
    h.Update(tokens.data(), tokens.size_bytes());
  } else {
    for (uint32_t t : tokens) h.UpdateU32(t);
  }
  return h.Final();
}

StatusOr<std::vector<Key>> ChunkKeys(const Namespace& ns, std::span<const uint32_t> tokens,
                                     std::span<const std::string> extras) {
  TW_ASSIGN_OR_RETURN(uint32_t ct, ChunkTokens(ns));
  size_t chunks = tokens.size() / ct;
  std::vector<Key> keys;
  keys.reserve(chunks);
  Key parent = NamespaceDigest(ns);
  for (size_t j = 0; j < chunks; ++j) {
    std::span<const uint8_t> extra;
    if (j < extras.size()) {
      extra = {reinterpret_cast<const uint8_t*>(extras[j].data()), extras[j].size()};
    }
    parent = ChunkKey(parent, extra, tokens.subspan(j * ct, ct));
    keys.push_back(parent);
  }
  return keys;
}

std::string HexEncode(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}

StatusOr<std::vector<uint8_t>> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return InvalidArgumentError(StrCat("hex: odd number of digits (", hex.size(), ")"));
  }
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = HexValue(hex[2 * i]), lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return InvalidArgumentError(StrCat("hex: \"", hex.substr(2 * i, 2), "\" at offset ", 2 * i,
                                         " is not a hex digit pair"));
    }
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

}  // namespace tw
