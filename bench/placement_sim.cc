#include "placement_sim.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <thread>

#include "tw/common/keys.h"
#include "tw/mesh/membership.h"
#include "tw/mesh/placement.h"

namespace tw::bench {
namespace {

using mesh::Fmix64;
using mesh::Membership;
using mesh::Peer;
using mesh::Placement;
using mesh::PlacementScore;
using mesh::PlacementSeed;

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Random 32-byte keys, little-endian words (placement reads the first 16 bytes as two u64le;
// this machine's byte order is assumed little-endian, as the bench's memcpy loads below do).
std::vector<Key> RandomKeys(size_t n, uint64_t seed) {
  std::vector<Key> keys(n);
  uint64_t state = seed * 0x2545f4914f6cdd1dULL;
  for (Key& k : keys) {
    for (size_t w = 0; w < 4; ++w) {
      uint64_t v = SplitMix64(state);
      __builtin_memcpy(k.bytes.data() + 8 * w, &v, 8);
    }
  }
  return keys;
}

// Node names that sort in index order, so an index comparison breaks ties as the spec does
// (the smaller name). The joining node sorts after every member ('j' > any digit).
std::string NodeName(size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "node-%07zu", i);
  return buf;
}
const char kJoiner[] = "node-joined";

Membership Members(size_t n, const std::string* extra, size_t skip, size_t reweigh, double weight) {
  std::vector<Peer> peers;
  peers.reserve(n + 1);
  for (size_t i = 0; i < n; ++i) {
    if (i == skip) continue;
    peers.push_back({NodeName(i), "10.0.0.1", 7470, i == reweigh ? weight : 1.0});
  }
  if (extra != nullptr) peers.push_back({*extra, "10.0.0.1", 7470, 1.0});
  return *Membership::Create(std::move(peers), 1);
}

// Runs fn(begin, end) over [0, n) split into `threads` slices.
void ParallelFor(size_t n, unsigned threads, const std::function<void(size_t, size_t)>& fn) {
  threads = std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(n)));
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    size_t b = n * t / threads, e = n * (t + 1) / threads;
    pool.emplace_back([&fn, b, e] { fn(b, e); });
  }
  for (std::thread& t : pool) t.join();
}

double MaxOverMean(const std::vector<uint32_t>& home, size_t nodes) {
  std::vector<size_t> load(nodes, 0);
  for (uint32_t h : home) ++load[h];
  size_t max = *std::max_element(load.begin(), load.end());
  double mean = static_cast<double>(home.size()) / static_cast<double>(nodes);
  return static_cast<double>(max) / mean;
}

// Each key's best and second-best node under the starting membership (all weights 1).
struct Best {
  double score1 = -1, score2 = -1;
  uint32_t node1 = 0, node2 = 0;
};

}  // namespace

StatusOr<PlacementSimResult> SimulatePlacement(const PlacementSimOptions& o) {
  if (o.nodes < 2 || o.nodes > mesh::kMaxPeers - 1) {
    return InvalidArgumentError("--nodes: must be in 2..99999");
  }
  if (o.keys < 1) return InvalidArgumentError("--keys: must be at least 1");
  if (!(o.new_weight > 0) || !std::isfinite(o.new_weight) || o.new_weight == 1.0) {
    return InvalidArgumentError("--new-weight: must be a finite number > 0 other than 1");
  }
  const auto start = std::chrono::steady_clock::now();
  const unsigned threads = o.threads > 0 ? o.threads : std::thread::hardware_concurrency();
  const size_t n = o.nodes;
  const size_t leaver = n / 2, reweighed = n / 3;
  const std::vector<Key> keys = RandomKeys(o.keys, o.seed);
  std::vector<uint64_t> seeds(n);
  for (size_t i = 0; i < n; ++i) seeds[i] = PlacementSeed(NodeName(i));
  const uint64_t joiner_seed = PlacementSeed(kJoiner);

  // The starting placement: nodes × keys rankings, the two best kept per key. Every starting
  // weight is 1, so the score -1/ln(u) grows with u, which grows with h >> 11 (placement.h):
  // ranking by h >> 11 is exact and skips the logarithm; the two winners' scores are then
  // computed by PlacementScore. The sample check below holds this to tw_mesh::Placement.
  std::vector<Best> best(keys.size());
  ParallelFor(keys.size(), threads, [&](size_t b, size_t e) {
    for (size_t k = b; k < e; ++k) {
      uint64_t k0, k1;
      __builtin_memcpy(&k0, keys[k].bytes.data(), 8);
      __builtin_memcpy(&k1, keys[k].bytes.data() + 8, 8);
      uint64_t r1 = 0, r2 = 0;
      uint32_t i1 = UINT32_MAX, i2 = UINT32_MAX;
      for (size_t i = 0; i < n; ++i) {
        const uint64_t rank = Fmix64(Fmix64(k0 ^ seeds[i]) ^ k1) >> 11;
        // Strictly greater: among equal ranks the smaller index (name) stays ahead.
        if (i1 == UINT32_MAX || rank > r1) {
          r2 = r1;
          i2 = i1;
          r1 = rank;
          i1 = static_cast<uint32_t>(i);
        } else if (i2 == UINT32_MAX || rank > r2) {
          r2 = rank;
          i2 = static_cast<uint32_t>(i);
        }
      }
      best[k] = Best{PlacementScore(keys[k], seeds[i1], 1.0),
                     PlacementScore(keys[k], seeds[i2], 1.0), i1, i2};
    }
  });

  PlacementSimResult r;
  r.nodes = n;
  r.keys = keys.size();
  r.sample = std::min(o.sample, keys.size());
  std::vector<uint32_t> home0(keys.size());
  for (size_t k = 0; k < keys.size(); ++k) home0[k] = best[k].node1;
  r.initial_max_over_mean_load = MaxOverMean(home0, n);

  // Compares the shortcut's homes (by name) with tw_mesh::Placement's on the sample.
  const Placement placement0(Members(n, nullptr, SIZE_MAX, SIZE_MAX, 1.0));
  for (size_t k = 0; k < r.sample; ++k) {
    if (placement0.Home(keys[k]) != NodeName(home0[k])) ++r.initial_sample_mismatches;
  }
  auto check = [&](PlacementChange& c, const Membership& m, const std::string& changed,
                   const std::function<std::string(size_t)>& home_name) {
    const Placement p(m);
    for (size_t k = 0; k < r.sample; ++k) {
      const std::string& before = placement0.Home(keys[k]);
      const std::string& after = p.Home(keys[k]);
      if (after != home_name(k)) ++c.sample_mismatches;
      if (before != after && before != changed && after != changed) {
        ++c.sample_moved_between_others;
      }
    }
  };
  const double keys_d = static_cast<double>(keys.size());
  const double n_d = static_cast<double>(n);

  {  // A node joins (weight 1): a key moves when the newcomer outscores its home.
    PlacementChange c{.name = "join"};
    c.expected_fraction = 1.0 / (n_d + 1);
    std::vector<uint32_t> home(keys.size());
    for (size_t k = 0; k < keys.size(); ++k) {
      bool moves = PlacementScore(keys[k], joiner_seed, 1.0) > best[k].score1;
      home[k] = moves ? static_cast<uint32_t>(n) : best[k].node1;
      c.moved += moves;
    }
    c.moved_fraction = static_cast<double>(c.moved) / keys_d;
    c.max_over_mean_load = MaxOverMean(home, n + 1);
    std::string joiner = kJoiner;
    check(c, Members(n, &joiner, SIZE_MAX, SIZE_MAX, 1.0), joiner,
          [&](size_t k) { return home[k] == n ? joiner : NodeName(home[k]); });
    r.changes.push_back(std::move(c));
  }
  {  // A node leaves: its keys go to their second-best node, no other key moves.
    PlacementChange c{.name = "leave"};
    c.expected_fraction = 1.0 / n_d;
    std::vector<uint32_t> home(keys.size());
    for (size_t k = 0; k < keys.size(); ++k) {
      bool moves = best[k].node1 == leaver;
      home[k] = moves ? best[k].node2 : best[k].node1;
      c.moved += moves;
    }
    c.moved_fraction = static_cast<double>(c.moved) / keys_d;
    // Load over the n - 1 remaining nodes: the leaver's count is 0 and left out of the mean.
    std::vector<size_t> load(n, 0);
    for (uint32_t h : home) ++load[h];
    c.max_over_mean_load =
        static_cast<double>(*std::max_element(load.begin(), load.end())) / (keys_d / (n_d - 1));
    check(c, Members(n, nullptr, leaver, SIZE_MAX, 1.0), NodeName(leaver),
          [&](size_t k) { return NodeName(home[k]); });
    r.changes.push_back(std::move(c));
  }
  {  // One node's weight changes: its score scales with its weight (score = -w / ln u).
    PlacementChange c{.name = "weight"};
    const double w = o.new_weight;
    c.expected_fraction = std::abs(w / (n_d - 1 + w) - 1.0 / n_d);
    std::vector<uint32_t> home(keys.size());
    for (size_t k = 0; k < keys.size(); ++k) {
      const Best& b = best[k];
      uint32_t h;
      if (b.node1 == reweighed) {
        // Still the best unless its new score fell below the runner-up (ties: index).
        double s = PlacementScore(keys[k], seeds[reweighed], w);
        h = s > b.score2 || (s == b.score2 && reweighed < b.node2) ? b.node1 : b.node2;
      } else {
        double s = PlacementScore(keys[k], seeds[reweighed], w);
        h = s > b.score1 || (s == b.score1 && reweighed < b.node1)
                ? static_cast<uint32_t>(reweighed)
                : b.node1;
      }
      home[k] = h;
      c.moved += h != b.node1;
    }
    c.moved_fraction = static_cast<double>(c.moved) / keys_d;
    // Load per unit of weight: the reweighed node is meant to carry w times the others.
    std::vector<double> load(n, 0);
    for (uint32_t h : home) load[h] += h == reweighed ? 1.0 / w : 1.0;
    c.max_over_mean_load = *std::max_element(load.begin(), load.end()) / (keys_d / (n_d - 1 + w));
    check(c, Members(n, nullptr, SIZE_MAX, reweighed, w), NodeName(reweighed),
          [&](size_t k) { return NodeName(home[k]); });
    r.changes.push_back(std::move(c));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace tw::bench
