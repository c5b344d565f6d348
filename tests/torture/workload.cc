// The torture workload: value bytes from key and version, and the client process.
#include "workload.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

namespace tw::torture {
namespace {

uint64_t Mix64(uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t KeyHash(const KeyBytes& k) {
  uint64_t h = 0;
  for (int i = 0; i < 4; ++i) {
    uint64_t w;
    std::memcpy(&w, k.data() + 8 * i, 8);
    h = Mix64(h ^ w);
  }
  return h;
}

uint64_t Word(uint64_t kh, uint64_t version, int segment, uint64_t index) {
  return Mix64(kh ^ Mix64((version + 1) * 0x100000001b3ull ^ (uint64_t(segment) << 56) ^ index));
}

bool CheckRangeVersion(uint64_t kh, uint64_t version, int segment, uint64_t offset, uint64_t length,
                       const uint8_t* data) {
  for (uint64_t i = 0; i < length / 8; ++i) {
    uint64_t w;
    std::memcpy(&w, data + 8 * i, 8);
    if (w != Word(kh, version, segment, offset / 8 + i)) return false;
  }
  return true;
}

}  // namespace

tw_namespace NamespaceFields::Fields() const {
  tw_namespace n{};
  n.model = "torture";
  n.model_revision = "r1";
  n.tokenizer = "t1";
  n.kv_dtype = "bf16";
  n.kv_layout = "nhd";
  n.parallel = parallel.c_str();
  n.adapter = adapter.c_str();
  n.tenant = "";
  n.chunk_tokens = "16";
  return n;
}

NamespaceFields NamespaceOf(uint32_t epoch, int rank) {
  NamespaceFields f;
  f.parallel = "tp=" + std::to_string(rank) + "/" + std::to_string(kRanks) + ",pp=0/1";
  f.adapter = epoch == 0 ? "" : "epoch" + std::to_string(epoch);
  return f;
}

std::array<uint64_t, kSegments> SegmentSizes(const KeyBytes& key) {
  std::array<uint64_t, kSegments> s{};
  uint64_t h = KeyHash(key);
  for (int i = 0; i < kSegments; ++i) {
    h = Mix64(h);
    s[i] = 4096 * (h % 4) + 8 * (1 + (h >> 8) % 511);
  }
  return s;
}

uint64_t ValueSize(const KeyBytes& key) {
  uint64_t n = 0;
  for (uint64_t s : SegmentSizes(key)) n += s;
  return n;
}

void FillRange(const KeyBytes& key, uint64_t version, int segment, uint64_t offset, uint64_t length,
               uint8_t* out) {
  const uint64_t kh = KeyHash(key);
  for (uint64_t i = 0; i < length / 8; ++i) {
    const uint64_t w = Word(kh, version, segment, offset / 8 + i);
    std::memcpy(out + 8 * i, &w, 8);
  }
}

bool CheckRange(const KeyBytes& key, int segment, uint64_t offset, uint64_t length,
                const uint8_t* data) {
  const uint64_t kh = KeyHash(key);
  for (uint64_t v = 0; v < kVersions; ++v) {
    if (CheckRangeVersion(kh, v, segment, offset, length, data)) return true;
  }
  return false;
}

bool CheckValue(const KeyBytes& key, const uint8_t* data, uint64_t length) {
  const auto sizes = SegmentSizes(key);
  uint64_t total = 0;
  for (uint64_t s : sizes) total += s;
  if (length != total) return false;
  const uint64_t kh = KeyHash(key);
  for (uint64_t v = 0; v < kVersions; ++v) {
    uint64_t at = 0;
    bool ok = true;
    for (int s = 0; s < kSegments && ok; ++s) {
      ok = CheckRangeVersion(kh, v, s, 0, sizes[s], data + at);
      at += sizes[s];
    }
    if (ok) return true;  // a value is written whole, under one version
  }
  return false;
}

int LatencyBucket(double us) {
  if (us < 1) return 0;
  return std::min(kLatencyBuckets - 1, int(4 * std::log2(us)));
}

double BucketMicros(int bucket) { return std::exp2(bucket / 4.0); }

std::string Hex(const KeyBytes& k) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t b : k) {
    s += d[b >> 4];
    s += d[b & 15];
  }
  return s;
}

bool FromHex(const std::string& s, KeyBytes* k) {
  if (s.size() != 64) return false;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    int h = nib(s[2 * i]), l = nib(s[2 * i + 1]);
    if (h < 0 || l < 0) return false;
    (*k)[i] = uint8_t(h * 16 + l);
  }
  return true;
}

std::vector<std::string> WorkerArgs(const WorkerConfig& c) {
  return {"--worker",
          "socket=" + c.socket,
          "log=" + c.log_path,
          "stats=" + c.stats_path,
          "id=" + std::to_string(c.id),
          "epoch=" + std::to_string(c.epoch),
          "seed=" + std::to_string(c.seed),
          "chains=" + std::to_string(c.chains),
          "chain_length=" + std::to_string(c.chain_length),
          "flood=" + std::string(c.flood ? "1" : "0"),
          "short_deadline_pct=" + std::to_string(c.short_deadline_pct)};
}

bool ParseWorkerArgs(int argc, char** argv, WorkerConfig* c) {
  if (argc < 2 || std::string(argv[1]) != "--worker") return false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    const size_t eq = a.find('=');
    if (eq == std::string::npos) continue;
    const std::string k = a.substr(0, eq), v = a.substr(eq + 1);
    if (k == "socket") c->socket = v;
    if (k == "log") c->log_path = v;
    if (k == "stats") c->stats_path = v;
    if (k == "id") c->id = uint32_t(std::stoul(v));
    if (k == "epoch") c->epoch = uint32_t(std::stoul(v));
    if (k == "seed") c->seed = std::stoull(v);
    if (k == "chains") c->chains = uint32_t(std::stoul(v));
    if (k == "chain_length") c->chain_length = uint32_t(std::stoul(v));
    if (k == "flood") c->flood = v == "1";
    if (k == "short_deadline_pct") c->short_deadline_pct = uint32_t(std::stoul(v));
  }
  return true;
}

namespace {

volatile sig_atomic_t g_stop = 0;
void OnTerm(int) { g_stop = 1; }

constexpr uint64_t kArena = 8ull << 20;
constexpr uint64_t kGetArea = 4ull << 20;
constexpr uint8_t kCanary = 0xC3;

double Micros(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
      .count();
}

class Worker {
 public:
  explicit Worker(const WorkerConfig& c) : c_(c), rng_(c.seed * 1000003 + c.id) {}

  int Run() {
    log_fd_ = open(c_.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int sfd = open(c_.stats_path.c_str(), O_RDWR | O_CLOEXEC);
    if (log_fd_ < 0 || sfd < 0) return 2;
    void* m = mmap(nullptr, sizeof(WorkerStats), PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
    close(sfd);
    if (m == MAP_FAILED) return 2;
    st_ = static_cast<WorkerStats*>(m);
    BuildChains();
    while (!g_stop) {
      if (client_ == nullptr && !Connect()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      if (c_.flood) {
        Flood();
        continue;
      }
      const bool ok = Step();
      CheckCanaries();
      if (!ok) Disconnect();
    }
    Disconnect();
    return 0;
  }

 private:
  struct Chain {
    std::vector<uint32_t> tokens;
    std::vector<KeyBytes> keys[kRanks];
  };

  void BuildChains() {
    chains_.resize(c_.chains);
    for (int r = 0; r < kRanks; ++r) {
      nsf_[r] = NamespaceOf(c_.epoch, r);
      ns_[r] = nsf_[r].Fields();
    }
    for (uint32_t ci = 0; ci < c_.chains; ++ci) {
      Chain& ch = chains_[ci];
      ch.tokens.resize(c_.chain_length * kChunkTokens);
      for (size_t i = 0; i < ch.tokens.size(); ++i) {
        ch.tokens[i] = uint32_t(Mix64((uint64_t(c_.id) << 40) ^ (uint64_t(ci) << 20) ^ i) % 60000);
      }
      for (int r = 0; r < kRanks; ++r) {
        ch.keys[r].resize(c_.chain_length);
        size_t n = 0;
        tw_chunk_keys(&ns_[r], TW_KEYS_NORMALIZE, ch.tokens.data(), ch.tokens.size(), nullptr, 0,
                      ch.keys[r][0].data(), c_.chain_length, &n);
      }
    }
  }

  bool Connect() {
    tw_client_options o{};
    o.socket_path = c_.socket.c_str();
    o.arena_size = kArena;
    o.namespaces = ns_;
    o.n_namespaces = kRanks;
    o.timeout_ms = 5000;
    o.max_in_flight = c_.flood ? 4096 : 0;
    const std::string name = "torture-w" + std::to_string(c_.id);
    o.client_name = name.c_str();
    if (tw_client_connect(&o, &client_) != TW_OK) {
      client_ = nullptr;
      return false;
    }
    ++st_->reconnects;
    for (int r = 0; r < kRanks; ++r)
      tw_client_namespace_digest(client_, size_t(r), digest_[r].data());
    uint64_t size = 0;
    arena_ = tw_client_arena(client_, &size);
    canaries_.clear();
    leases_.clear();
    return true;
  }
  void Disconnect() {
    if (client_ != nullptr) tw_client_close(client_);
    client_ = nullptr;
    arena_ = nullptr;
    canaries_.clear();
  }

  void Log(char what, int rank, const KeyBytes& k) {
    const std::string line = std::string(1, what) + " " + std::to_string(c_.epoch) + " " +
                             std::to_string(rank) + " " + Hex(k) + "\n";
    if (write(log_fd_, line.data(), line.size()) < 0) _exit(3);
  }

  uint64_t Rand(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  // One random operation; false when the connection must be redone.
  bool Step() {
    const uint64_t p = Rand(100);
    const int rank = int(Rand(kRanks));
    const uint32_t ci = uint32_t(Rand(c_.chains));
    if (p < 25) return Put(rank, ci);
    if (p < 55) return Get(rank, ci);
    if (p < 70) return Lookup(rank, ci, /*tp=*/false).ok;
    if (p < 78) return Lookup(rank, ci, /*tp=*/true).ok;
    if (p < 86) return Delete(rank, ci);
    if (p < 93) return Exists(rank, ci);
    return Release();
  }

  bool Done(int rc) {
    if (rc == TW_OK) {
      ++st_->ops;
      return true;
    }
    ++st_->call_errors;
    return false;
  }

  bool Put(int rank, uint32_t ci) {
    Chain& ch = chains_[ci];
    const uint32_t n = 1 + uint32_t(Rand(c_.chain_length));
    std::vector<tw_put_item> items(n);
    std::vector<std::array<tw_scatter, 2 * kSegments>> scatter(n);
    std::vector<std::array<uint64_t, kSegments>> sizes(n);
    uint64_t at = 0;
    for (uint32_t j = 0; j < n; ++j) {
      const KeyBytes& key = ch.keys[rank][j];
      const uint64_t version = Rand(kVersions);
      sizes[j] = SegmentSizes(key);
      int k = 0;
      for (int s = 0; s < kSegments; ++s) {
        // Each segment in two ranges, the second half first in the arena.
        const uint64_t half = (sizes[j][s] / 16) * 8;
        const uint64_t rest = sizes[j][s] - half;
        scatter[j][k++] = {uint32_t(s), half, rest, at};
        FillRange(key, version, s, half, rest, arena_ + at);
        at += rest;
        if (half > 0) {
          scatter[j][k++] = {uint32_t(s), 0, half, at};
          FillRange(key, version, s, 0, half, arena_ + at);
          at += half;
        }
      }
      tw_put_item& it = items[j];
      it.key = key.data();
      it.parent = j == 0 ? digest_[rank].data() : ch.keys[rank][j - 1].data();
      it.namespace_digest = digest_[rank].data();
      it.tokens = ch.tokens.data() + j * kChunkTokens;
      it.n_tokens = kChunkTokens;
      it.segment_sizes = sizes[j].data();
      it.n_segments = kSegments;
      it.scatter = scatter[j].data();
      it.n_scatter = size_t(k);
    }
    const int durability = Rand(2) == 0 ? TW_DURABILITY_DISK : TW_DURABILITY_MEMORY;
    const int rc = tw_client_put(client_, items.data(), n, durability, 5000);
    if (!Done(rc)) return false;
    for (uint32_t j = 0; j < n; ++j) {
      ++st_->puts[items[j].result & 7];
      if (durability == TW_DURABILITY_DISK && items[j].result == TW_PUT_STORED) {
        Log('A', rank, ch.keys[rank][j]);
      }
    }
    return true;
  }

  struct LookupOut {
    bool ok = false;
    uint64_t prefix = 0;
    uint64_t lease = 0;
  };
  LookupOut Lookup(int rank, uint32_t ci, bool tp) {
    Chain& ch = chains_[ci];
    const uint32_t flags = Rand(2) == 0 ? TW_LOOKUP_LEASE : 0;
    tw_lookup_result res{};
    int rc;
    const auto start = std::chrono::steady_clock::now();
    if (tp) {
      std::vector<uint8_t> digests, keys;
      for (int r = 0; r < kRanks; ++r) {
        digests.insert(digests.end(), digest_[r].begin(), digest_[r].end());
        for (const KeyBytes& k : ch.keys[r]) keys.insert(keys.end(), k.begin(), k.end());
      }
      rc = tw_client_lookup(client_, digests.data(), keys.data(), c_.chain_length, kRanks, flags,
                            3000, &res);
    } else {
      rc = tw_client_lookup(client_, digest_[rank].data(), ch.keys[rank][0].data(), c_.chain_length,
                            1, flags, 3000, &res);
    }
    LookupOut out;
    out.ok = Done(rc);
    if (!out.ok) return out;
    ++st_->lookup_us[LatencyBucket(Micros(start))];
    out.prefix = res.prefix;
    out.lease = res.lease;
    if (res.lease != 0) {
      ++st_->leases_taken;
      leases_.push_back(res.lease);
    }
    return out;
  }

  bool Get(int rank, uint32_t ci) {
    Chain& ch = chains_[ci];
    LookupOut lk = Lookup(rank, ci, false);
    if (!lk.ok) return false;
    const uint32_t n = lk.prefix > 0 ? uint32_t(lk.prefix) : 1 + uint32_t(Rand(c_.chain_length));
    std::vector<tw_get_item> items(n);
    std::vector<std::vector<tw_scatter>> scatter(n);
    uint64_t at = kGetArea;
    for (uint32_t j = 0; j < n; ++j) {
      const KeyBytes& key = ch.keys[rank][j];
      tw_get_item& it = items[j];
      it.key = key.data();
      it.namespace_digest = digest_[rank].data();
      if (Rand(4) == 0) {  // the whole value, contiguous
        it.arena_offset = at;
        it.arena_length = ValueSize(key);
        std::memset(arena_ + at, 0x5A, it.arena_length);
        at += it.arena_length + 8 * Rand(64);
        continue;
      }
      const auto sizes = SegmentSizes(key);
      for (int s = 0; s < kSegments; ++s) {
        if (Rand(3) == 0) continue;
        const uint64_t words = sizes[s] / 8;
        const uint64_t off = Rand(words);
        const uint64_t len = 1 + Rand(words - off);
        scatter[j].push_back({uint32_t(s), off * 8, len * 8, at});
        std::memset(arena_ + at, 0x5A, len * 8);
        at += len * 8 + 8 * Rand(512);
      }
      if (scatter[j].empty()) {
        scatter[j].push_back({0, 0, sizes[0], at});
        at += sizes[0];
      }
      it.scatter = scatter[j].data();
      it.n_scatter = scatter[j].size();
    }
    const bool short_deadline = Rand(100) < c_.short_deadline_pct;
    const uint32_t timeout = short_deadline ? 1 + uint32_t(Rand(3)) : 3000;
    const uint64_t lease = Rand(2) == 0 ? lk.lease : 0;
    tw_future* f = nullptr;
    const auto start = std::chrono::steady_clock::now();
    int rc = tw_client_get_async(client_, items.data(), n, lease, timeout, &f);
    // Wait past the deadline: twd answers a deadline miss itself, and only an answered
    // request's ranges are ours again.
    if (rc == TW_OK) rc = tw_future_wait(f, 10000);
    tw_future_free(f);
    if (!Done(rc)) return false;
    ++st_->get_us[LatencyBucket(Micros(start))];
    for (uint32_t j = 0; j < n; ++j) {
      const tw_get_item& it = items[j];
      const KeyBytes& key = ch.keys[rank][j];
      if (it.tier == TW_TIER_NONE) {
        ++st_->misses[it.miss & 7];
        // The ranges are ours again: twd must never write them from now on.
        if (it.n_scatter == 0) {
          std::memset(arena_ + it.arena_offset, kCanary, it.arena_length);
          canaries_.push_back({it.arena_offset, it.arena_length});
        } else {
          for (const tw_scatter& sc : scatter[j]) {
            std::memset(arena_ + sc.arena_offset, kCanary, sc.length);
            canaries_.push_back({sc.arena_offset, sc.length});
          }
        }
        continue;
      }
      bool good = true;
      uint64_t bytes = 0;
      if (it.n_scatter == 0) {
        good = CheckValue(key, arena_ + it.arena_offset, it.bytes);
        bytes = it.bytes;
      } else {
        for (const tw_scatter& sc : scatter[j]) {
          good = good &&
                 CheckRange(key, int(sc.segment), sc.offset, sc.length, arena_ + sc.arena_offset);
          bytes += sc.length;
        }
      }
      ++st_->chunks_verified;
      st_->bytes_verified += bytes;
      if (!good) {
        ++st_->wrong_bytes;
        Log('W', rank, key);
      }
    }
    return true;
  }

  void CheckCanaries() {
    if (arena_ == nullptr) return;
    for (const auto& [off, len] : canaries_) {
      for (uint64_t i = 0; i < len; ++i) {
        if (arena_[off + i] != kCanary) {
          ++st_->late_writes;
          break;
        }
      }
    }
    canaries_.clear();
  }

  bool Delete(int rank, uint32_t ci) {
    Chain& ch = chains_[ci];
    // Descendants first, as reclaim does: the last 1-2 chunks of the chain.
    const uint32_t from =
        c_.chain_length - 1 - uint32_t(Rand(std::min<uint32_t>(2, c_.chain_length)));
    std::vector<uint8_t> keys;
    for (uint32_t j = from; j < c_.chain_length; ++j) {
      Log('D', rank, ch.keys[rank][j]);
      keys.insert(keys.end(), ch.keys[rank][j].begin(), ch.keys[rank][j].end());
    }
    std::vector<uint8_t> deleted(c_.chain_length - from);
    return Done(tw_client_delete(client_, digest_[rank].data(), keys.data(), deleted.size(),
                                 deleted.data(), 3000));
  }

  bool Exists(int rank, uint32_t ci) {
    Chain& ch = chains_[ci];
    std::vector<uint8_t> tiers(c_.chain_length);
    std::vector<uint64_t> sizes(c_.chain_length);
    if (!Done(tw_client_exists(client_, digest_[rank].data(), ch.keys[rank][0].data(),
                               c_.chain_length, tiers.data(), sizes.data(), 3000))) {
      return false;
    }
    for (uint32_t j = 0; j < c_.chain_length; ++j) {
      if (tiers[j] != TW_TIER_NONE && sizes[j] != ValueSize(ch.keys[rank][j])) ++st_->wrong_bytes;
    }
    return true;
  }

  bool Release() {
    // Some leases are released, the rest left to expire.
    if (leases_.empty()) return Done(tw_client_ping(client_, 3000));
    const size_t n = 1 + Rand(leases_.size());
    uint32_t released = 0;
    const int rc = tw_client_release_leases(client_, leases_.data(), n, &released, 3000);
    leases_.erase(leases_.begin(), leases_.begin() + long(n));
    return Done(rc);
  }

  // A client that sends and never reads: many lookups in flight, then the process stops
  // itself (its reader thread with it) until the harness kills it.
  void Flood() {
    std::vector<tw_lookup_result> res(2000);
    std::vector<tw_future*> fs;
    const Chain& ch = chains_[0];
    for (auto& r : res) {
      tw_future* f = nullptr;
      if (tw_client_lookup_async(client_, digest_[0].data(), ch.keys[0][0].data(), c_.chain_length,
                                 1, TW_LOOKUP_LEASE, 60000, &r, &f) != TW_OK) {
        break;
      }
      fs.push_back(f);
    }
    raise(SIGSTOP);
    for (tw_future* f : fs) tw_future_free(f);
    Disconnect();
  }

  WorkerConfig c_;
  std::mt19937_64 rng_;
  int log_fd_ = -1;
  WorkerStats* st_ = nullptr;
  tw_client* client_ = nullptr;
  uint8_t* arena_ = nullptr;
  NamespaceFields nsf_[kRanks];
  tw_namespace ns_[kRanks]{};
  KeyBytes digest_[kRanks]{};
  std::vector<Chain> chains_;
  std::vector<uint64_t> leases_;
  std::vector<std::pair<uint64_t, uint64_t>> canaries_;
};

}  // namespace

int RunWorker(const WorkerConfig& config) {
  struct sigaction sa {};
  sa.sa_handler = OnTerm;
  sigaction(SIGTERM, &sa, nullptr);
  Worker w(config);
  return w.Run();
}

}  // namespace tw::torture
