// The key scheme of Token Warehouse (docs/keys.md is the normative spec).
//
// A namespace (9 UTF-8 fields: model, model_revision, tokenizer, kv_dtype, kv_layout,
// parallel, adapter, tenant, chunk_tokens) names everything that makes KV bytes reusable.
// Its digest is
//   ns = SHA-256("tokenwarehouse/ns/v1" ‖ for i = 1..9: u8(i) ‖ u32le(len(f_i)) ‖ f_i)
// and a token sequence becomes a chain of chunk keys:
//   k_0 = ns
//   k_j = SHA-256("tokenwarehouse/chunk/v1" ‖ k_{j-1} ‖ u32le(len(x_j)) ‖ x_j ‖
//                 u32le(t) for each token id t of chunk j)
// where x_j are the chunk's extra bytes (empty by default). Only full chunks get keys.
// No seed, no process state: the same inputs give the same keys everywhere.
//
// All functions are pure and thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tw/common/status.h"

namespace tw {

// A 32-byte key: a namespace digest or a chunk key.
struct Key {
  std::array<uint8_t, 32> bytes{};

  // Four word compares, inline (the defaulted form calls memcmp: a lookup compares a key
  // per chunk).
  friend bool operator==(const Key& a, const Key& b) {
    uint64_t x[4], y[4];
    __builtin_memcpy(x, a.bytes.data(), sizeof x);
    __builtin_memcpy(y, b.bytes.data(), sizeof y);
    return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
  }
  friend auto operator<=>(const Key&, const Key&) = default;
  // Lower-case hex, 64 characters.
  std::string Hex() const;
  // Parses exactly 64 hex digits (either case).
  static StatusOr<Key> FromHex(std::string_view hex);
  // Builds from exactly 32 raw bytes.
  static StatusOr<Key> FromBytes(std::string_view raw);
  std::string_view View() const {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  }
  bool IsZero() const;

  template <typename H>
  friend H AbslHashValue(H h, const Key& k) {
    // Keys are SHA-256 outputs: the first 8 bytes are already uniformly distributed.
    uint64_t v;
    __builtin_memcpy(&v, k.bytes.data(), sizeof v);
    return H::combine(std::move(h), v);
  }
};

// Hash functor for std::unordered_map<Key, ...>.
struct KeyHash {
  size_t operator()(const Key& k) const {
    uint64_t v;
    __builtin_memcpy(&v, k.bytes.data(), sizeof v);
    return static_cast<size_t>(v);
  }
};

// The nine namespace fields, in hashing order.
struct Namespace {
  std::string model;           // model name, e.g. "meta-llama/Llama-3.1-8B-Instruct"
  std::string model_revision;  // weights digest or revision
  std::string tokenizer;       // tokenizer name/revision
  std::string kv_dtype;        // canonical: bf16, fp16, fp32, fp8_e4m3, fp8_e5m2, int8, ...
  std::string kv_layout;       // engine's KV memory layout, e.g. "vllm/NHD/block16"
  std::string parallel;        // canonical: "tp=R/N,pp=R/N" (+ further items sorted by name)
  std::string adapter;         // LoRA adapter id, empty if none
  std::string tenant;          // isolation salt / tenant name
  std::string chunk_tokens;    // tokens per chunk in decimal, e.g. "256"

  friend bool operator==(const Namespace&, const Namespace&) = default;
};

inline constexpr size_t kNamespaceFieldCount = 9;
// The field names in hashing order ("model", ..., "chunk_tokens").
extern const std::array<std::string_view, kNamespaceFieldCount> kNamespaceFieldNames;
// Pointer-to-member in the same order, for generic code (JSON readers, tests).
extern const std::array<std::string Namespace::*, kNamespaceFieldCount> kNamespaceFields;

// The namespace digest over the fields exactly as given (no normalisation).
Key NamespaceDigest(const Namespace& ns);

// Returns the canonical spelling of `ns` (docs/keys.md "Canonical spellings"):
// kv_dtype lower-cased with aliases mapped (bfloat16 → bf16, float16/half → fp16, ...),
// parallel as "tp=R/N,pp=R/N[,name=value...]", chunk_tokens as a positive decimal without
// leading zeros. Errors name the field: a rank outside its group, a malformed item.
StatusOr<Namespace> NormalizeNamespace(const Namespace& ns);

// The number of tokens per chunk, parsed from ns.chunk_tokens (must be 1..1<<20).
StatusOr<uint32_t> ChunkTokens(const Namespace& ns);

// k_j from k_{j-1}: one step of the chain.
Key ChunkKey(const Key& parent, std::span<const uint8_t> extra, std::span<const uint32_t> tokens);

// The keys of every full chunk of `tokens` under the (already normalised or not — it is
// hashed as given) namespace. `extras` may be empty (no extra bytes anywhere) or name the
// extra bytes of chunk j at index j; entries past the last full chunk are ignored.
StatusOr<std::vector<Key>> ChunkKeys(const Namespace& ns, std::span<const uint32_t> tokens,
                                     std::span<const std::string> extras = {});

// Lower-case hex of arbitrary bytes, and its inverse (even length, hex digits only).
std::string HexEncode(std::span<const uint8_t> bytes);
StatusOr<std::vector<uint8_t>> HexDecode(std::string_view hex);

}  // namespace tw
