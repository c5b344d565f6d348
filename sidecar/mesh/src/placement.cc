#include "tw/mesh/placement.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <utility>

namespace tw::mesh {
namespace {

constexpr std::string_view kSeedDomain = "tokenwarehouse/place/v1";

uint64_t LoadLe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Higher score first; equal scores: the smaller node name (index order, names are sorted).
struct Scored {
  double score;
  size_t index;
  bool operator<(const Scored& o) const {
    return score != o.score ? score > o.score : index < o.index;
  }
};

}  // namespace

uint64_t Fmix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

uint64_t PlacementSeed(std::string_view node) {
  std::string input;
  input.reserve(kSeedDomain.size() + node.size());
  input.append(kSeedDomain);
  input.append(node);
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // EVP_Digest only fails on allocation failure inside OpenSSL; the digest is then zero, which
  // is still deterministic but would be wrong: treat it as fatal.
  if (EVP_Digest(input.data(), input.size(), digest, &len, EVP_sha256(), nullptr) != 1 ||
      len != 32) {
    std::abort();
  }
  return LoadLe64(digest);
}

uint64_t PlacementUnit(const Key& key, uint64_t seed) {
  const uint64_t k0 = LoadLe64(key.bytes.data());
  const uint64_t k1 = LoadLe64(key.bytes.data() + 8);
  return Fmix64(Fmix64(k0 ^ seed) ^ k1) >> 11;
}

double PlacementScore(const Key& key, uint64_t seed, double weight) {
  const double u = (static_cast<double>(PlacementUnit(key, seed)) + 0.5) * 0x1.0p-53;
  return -weight / std::log(u);
}

Placement::Placement(const Membership& membership) : version_(membership.version()) {
  nodes_.reserve(membership.size());
  seeds_.reserve(membership.size());
  weights_.reserve(membership.size());
  for (const Peer& p : membership.peers()) {  // sorted by node name
    nodes_.push_back(p.node);
    seeds_.push_back(PlacementSeed(p.node));
    weights_.push_back(p.weight);
  }
  uniform_ = std::all_of(weights_.begin(), weights_.end(),
                         [&](double w) { return w == weights_.front(); });
}

size_t Placement::HomeIndex(const Key& key) const {
  if (uniform_) {
    // Equal weights: -w / ln(u) grows with u, so the largest unit wins (ties: smaller index,
    // as with scores); no logarithm needed.
    uint64_t best_unit = 0;
    size_t best = 0;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const uint64_t u = PlacementUnit(key, seeds_[i]);
      if (i == 0 || u > best_unit) {
        best_unit = u;
        best = i;
      }
    }
    return best;
  }
  Scored best{-1.0, 0};
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Scored s{PlacementScore(key, seeds_[i], weights_[i]), i};
    if (s < best) best = s;
  }
  return best.index;
}

std::vector<size_t> Placement::TopIndices(const Key& key, size_t k) const {
  k = std::min(k, nodes_.size());
  std::vector<Scored> scored;
  scored.reserve(nodes_.size());
  for (size_t i = 0; i < nodes_.size(); ++i) {
    // Equal weights rank by unit alone (see HomeIndex); a double holds a 53-bit unit exactly.
    scored.push_back({uniform_ ? static_cast<double>(PlacementUnit(key, seeds_[i]))
                               : PlacementScore(key, seeds_[i], weights_[i]),
                      i});
  }
  std::partial_sort(scored.begin(), scored.begin() + static_cast<ptrdiff_t>(k), scored.end());
  std::vector<size_t> out;
  out.reserve(k);
  for (size_t i = 0; i < k; ++i) out.push_back(scored[i].index);
  return out;
}

std::vector<std::string> Placement::Top(const Key& key, size_t k) const {
  std::vector<std::string> out;
  for (size_t i : TopIndices(key, k)) out.push_back(nodes_[i]);
  return out;
}

}  // namespace tw::mesh
