// Placement: which node is the home of a chunk key, by weighted rendezvous hashing (highest
// random weight) over the members of one membership snapshot. docs/mesh.md is the normative
// spec; tests/mesh/placement_test.cc holds its test vectors. In short:
//   seed(node)     = u64le(SHA-256("tokenwarehouse/place/v1" ‖ node name)[0..8])
//   h(key, node)   = fmix64(fmix64(u64le(key[0..8]) ^ seed(node)) ^ u64le(key[8..16]))
//   u              = ((h >> 11) + 0.5) / 2^53                       (in (0, 1))
//   score          = -weight(node) / ln(u)
// The home is the node with the highest score (ties: the smaller node name); the top-k homes
// are the k highest. fmix64 is MurmurHash3's 64-bit finaliser. No process-random seed: every
// machine computes the same homes from the same peers file. A node's expected share of keys is
// its weight over the sum of weights, and adding or removing a node moves only the keys it
// gains or loses (about 1/n of them), never keys between two other nodes.
//
// Threading: immutable after construction; any thread may call anything. Lifetime: a value
// built from a snapshot; it copies what it needs (names, weights) and does not keep the
// snapshot.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tw/common/keys.h"
#include "tw/mesh/membership.h"

namespace tw::mesh {

// The 64-bit per-node seed of the spec above.
uint64_t PlacementSeed(std::string_view node);
// MurmurHash3's fmix64.
uint64_t Fmix64(uint64_t x);
// The spec's unit of `key` on a node with this seed: the top 53 bits of its hash (the score's
// u is (unit + 0.5) / 2^53).
uint64_t PlacementUnit(const Key& key, uint64_t seed);
// The spec's score of `key` on a node with this seed and weight.
double PlacementScore(const Key& key, uint64_t seed, double weight);

class Placement {
 public:
  explicit Placement(const Membership& membership);

  size_t size() const { return nodes_.size(); }
  // Node names, sorted (the index space of HomeIndex and TopIndices).
  const std::vector<std::string>& nodes() const { return nodes_; }
  uint64_t membership_version() const { return version_; }

  // Index into nodes() of the key's home. REQUIRES: size() > 0.
  size_t HomeIndex(const Key& key) const;
  // The key's home node's name. REQUIRES: size() > 0.
  const std::string& Home(const Key& key) const { return nodes_[HomeIndex(key)]; }
  // The min(k, size()) highest-scoring nodes, best first, as indices into nodes().
  std::vector<size_t> TopIndices(const Key& key, size_t k) const;
  // The same as names.
  std::vector<std::string> Top(const Key& key, size_t k) const;

 private:
  std::vector<std::string> nodes_;
  std::vector<uint64_t> seeds_;
  std::vector<double> weights_;
  bool uniform_ = true;  // every weight equal: rank by unit, no logarithm
  uint64_t version_ = 0;
};

}  // namespace tw::mesh
