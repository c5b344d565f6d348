// libtwclient's C ABI: the key functions against the shared key vectors, error reporting,
// and the connection calls (sync and async) against the real twd in-process, out-of-order
// completion against MisbehavingTwd.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "misbehaving_twd.h"
#include "real_twd.h"
#include "tw/common/keys.h"
#include "tw_client.h"

namespace {

std::string Hex(const uint8_t* p, size_t n) {
  return tw::HexEncode(std::span<const uint8_t>(p, n));
}

// Holds the strings a tw_namespace points to.
struct CNamespace {
  explicit CNamespace(const nlohmann::json& j) {
    for (size_t i = 0; i < tw::kNamespaceFieldCount; ++i) {
      auto name = std::string(tw::kNamespaceFieldNames[i]);
      values[i] = j.contains(name) ? j[name].get<std::string>() : "";
    }
    ns = {values[0].c_str(), values[1].c_str(), values[2].c_str(),
          values[3].c_str(), values[4].c_str(), values[5].c_str(),
          values[6].c_str(), values[7].c_str(), values[8].c_str()};
  }
  std::string values[tw::kNamespaceFieldCount];
  tw_namespace ns;
};

nlohmann::json Vectors() {
  std::ifstream in(std::string(TW_SOURCE_DIR) + "/tests/common/key_vectors.json");
  return nlohmann::json::parse(in);
}

TEST(CApiKeys, SharedVectors) {
  auto v = Vectors();
  ASSERT_GE(v["cases"].size(), 10u);
  for (const auto& raw : v["raw_digests"]) {
    CNamespace ns(raw["namespace"]);
    uint8_t d[TW_KEY_SIZE];
    ASSERT_EQ(tw_namespace_digest(&ns.ns, TW_KEYS_AS_GIVEN, d), TW_OK);
    EXPECT_EQ(Hex(d, 32), raw["ns_digest"].get<std::string>());
  }
  for (const auto& c : v["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    CNamespace ns(c["namespace"]);
    // Normalisation.
    char buf[4096];
    tw_namespace out;
    size_t needed = 0;
    ASSERT_EQ(tw_namespace_normalize(&ns.ns, &out, buf, sizeof buf, &needed), TW_OK);
    EXPECT_EQ(std::string(out.kv_dtype), c["normalized"]["kv_dtype"].get<std::string>());
    EXPECT_EQ(std::string(out.parallel), c["normalized"]["parallel"].get<std::string>());
    EXPECT_EQ(std::string(out.chunk_tokens), c["normalized"]["chunk_tokens"].get<std::string>());
    uint8_t d[TW_KEY_SIZE];
    ASSERT_EQ(tw_namespace_digest(&ns.ns, TW_KEYS_NORMALIZE, d), TW_OK);
    EXPECT_EQ(Hex(d, 32), c["ns_digest"].get<std::string>());
    // Keys.
    std::vector<uint32_t> tokens = c["tokens"].get<std::vector<uint32_t>>();
    std::vector<std::vector<uint8_t>> extra_bytes;
    std::vector<tw_bytes> extras;
    for (const auto& e : c["extras"]) extra_bytes.push_back(*tw::HexDecode(e.get<std::string>()));
    for (const auto& e : extra_bytes) extras.push_back(tw_bytes{e.data(), e.size()});
    size_t n = 0;
    std::vector<uint8_t> keys(32 * (tokens.size() + 1));
    ASSERT_EQ(tw_chunk_keys(&ns.ns, TW_KEYS_NORMALIZE, tokens.data(), tokens.size(), extras.data(),
                            extras.size(), keys.data(), tokens.size() + 1, &n),
              TW_OK)
        << tw_last_error();
    ASSERT_EQ(n, c["keys"].size());
    for (size_t j = 0; j < n; ++j) {
      EXPECT_EQ(Hex(keys.data() + 32 * j, 32), c["keys"][j].get<std::string>());
    }
  }
}

TEST(CApiKeys, ErrorsCarryCodeAndMessage) {
  tw_namespace ns = {};
  ns.chunk_tokens = "zero";
  uint32_t tokens[4] = {1, 2, 3, 4};
  size_t n = 0;
  uint8_t out[64];
  EXPECT_EQ(tw_chunk_keys(&ns, 0, tokens, 4, nullptr, 0, out, 2, &n), TW_E_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tw_last_error()).find("chunk_tokens"), std::string::npos);
  EXPECT_STREQ(tw_error_name(TW_E_INVALID_ARGUMENT), "INVALID_ARGUMENT");
  EXPECT_STREQ(tw_error_name(999), "UNKNOWN");
  // Output too small: the count needed is still reported.
  ns.chunk_tokens = "1";
  EXPECT_EQ(tw_chunk_keys(&ns, 0, tokens, 4, nullptr, 0, out, 2, &n), TW_E_RESOURCE_EXHAUSTED);
  EXPECT_EQ(n, 4u);
  char small[4];
  tw_namespace canon;
  size_t needed = 0;
  EXPECT_EQ(tw_namespace_normalize(&ns, &canon, small, sizeof small, &needed),
            TW_E_RESOURCE_EXHAUSTED);
  EXPECT_GT(needed, sizeof small);
  EXPECT_EQ(tw_chunk_keys(nullptr, 0, tokens, 4, nullptr, 0, out, 2, &n), TW_E_INVALID_ARGUMENT);
  EXPECT_STREQ(tw_miss_name(TW_MISS_EVICTED), "evicted");
  EXPECT_STREQ(tw_put_result_name(TW_PUT_REJECTED_ADMISSION), "rejected_admission");
  EXPECT_STREQ(tw_tier_name(TW_TIER_NVME), "nvme");
  EXPECT_STREQ(tw_tier_name(TW_TIER_PEER), "peer");
  EXPECT_EQ(tw_client_abi_version(), TW_CLIENT_ABI_VERSION);
}

TEST(CApiKeys, ChainStepMatchesChunkKeys) {
  tw_namespace ns = {};
  ns.model = "m";
  ns.chunk_tokens = "2";
  uint32_t tokens[4] = {10, 11, 12, 13};
  uint8_t keys[64];
  size_t n = 0;
  ASSERT_EQ(tw_chunk_keys(&ns, 0, tokens, 4, nullptr, 0, keys, 2, &n), TW_OK);
  uint8_t d[32], k1[32], k2[32];
  ASSERT_EQ(tw_namespace_digest(&ns, 0, d), TW_OK);
  ASSERT_EQ(tw_chunk_key(d, nullptr, 0, tokens, 2, k1), TW_OK);
  ASSERT_EQ(tw_chunk_key(k1, nullptr, 0, tokens + 2, 2, k2), TW_OK);
  EXPECT_EQ(std::memcmp(keys, k1, 32), 0);
  EXPECT_EQ(std::memcmp(keys + 32, k2, 32), 0);
}

// The C ABI against the real twd (in-process: service core, socket codec and server over the
// real store on a temporary directory).
class CApiClient : public ::testing::Test {
 protected:
  // Starts the server the client connects to; returns its socket.
  virtual std::string StartServer() {
    tw::Status st = twd_.Start();
    EXPECT_TRUE(st.ok()) << st.ToString();
    return twd_.socket_path();
  }
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("twclient-capi-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    const std::string path = StartServer();
    ASSERT_FALSE(path.empty());
    ns_.model = "m";
    ns_.chunk_tokens = "2";
    tw_client_options o = {};
    o.socket_path = path.c_str();
    o.arena_size = 1 << 20;
    o.namespaces = &ns_;
    o.n_namespaces = 1;
    o.timeout_ms = 5000;
    ASSERT_EQ(tw_client_connect(&o, &client_), TW_OK) << tw_last_error();
    ASSERT_EQ(tw_client_namespace_digest(client_, 0, digest_), TW_OK);
  }
  void TearDown() override {
    tw_client_close(client_);
    std::filesystem::remove_all(dir_);
  }

  std::filesystem::path dir_;
  tw::client::testing::RealTwd twd_;
  tw_namespace ns_ = {};
  tw_client* client_ = nullptr;
  uint8_t digest_[32];
};

TEST_F(CApiClient, PutGetLookupExistsDeleteStats) {
  uint64_t size = 0;
  uint8_t* arena = tw_client_arena(client_, &size);
  ASSERT_NE(arena, nullptr);
  ASSERT_EQ(size, uint64_t{2} << 20);
  uint32_t tokens[4] = {1, 2, 3, 4};
  uint8_t keys[64];
  size_t n = 0;
  ASSERT_EQ(tw_chunk_keys(&ns_, 0, tokens, 4, nullptr, 0, keys, 2, &n), TW_OK);
  for (int i = 0; i < 2000; ++i) arena[i] = static_cast<uint8_t>(i % 1000);

  // Each item from its own arena bytes (twd refuses items that share them).
  tw_scatter sc[2][2] = {{{0, 0, 500, 0}, {0, 500, 500, 500}},
                         {{0, 0, 500, 1000}, {0, 500, 500, 1500}}};
  tw_put_item put[2] = {};
  for (int j = 0; j < 2; ++j) {
    put[j].key = keys + 32 * j;
    put[j].parent = j == 0 ? digest_ : keys;
    put[j].namespace_digest = digest_;
    put[j].tokens = tokens + 2 * j;
    put[j].n_tokens = 2;
    put[j].scatter = sc[j];
    put[j].n_scatter = 2;  // one segment of 1000 bytes
    put[j].result = -1;
  }
  ASSERT_EQ(tw_client_put(client_, put, 2, TW_DURABILITY_DISK, 0), TW_OK) << tw_last_error();
  EXPECT_EQ(put[0].result, TW_PUT_STORED);
  EXPECT_EQ(put[1].result, TW_PUT_STORED);

  uint8_t tiers[2] = {9, 9};
  tw_lookup_result lr = {};
  lr.tiers = tiers;
  ASSERT_EQ(tw_client_lookup(client_, digest_, keys, 2, 1, TW_LOOKUP_LEASE, 0, &lr), TW_OK);
  EXPECT_EQ(lr.prefix, 2u);
  EXPECT_EQ(lr.miss, TW_MISS_NONE);
  EXPECT_EQ(tiers[0], TW_TIER_DRAM);
  EXPECT_EQ(tiers[1], TW_TIER_DRAM);

  tw_get_item get = {};
  get.key = keys + 32;
  get.namespace_digest = digest_;
  get.arena_offset = 4096;
  get.arena_length = 4096;
  ASSERT_EQ(tw_client_get(client_, &get, 1, lr.lease, 0), TW_OK);
  EXPECT_EQ(get.miss, TW_MISS_NONE);
  EXPECT_EQ(get.bytes, 1000u);
  EXPECT_EQ(std::memcmp(arena, arena + 4096, 1000), 0);

  uint64_t sizes[2];
  ASSERT_EQ(tw_client_exists(client_, digest_, keys, 2, tiers, sizes, 0), TW_OK);
  EXPECT_EQ(tiers[0], TW_TIER_DRAM);
  EXPECT_EQ(sizes[1], 1000u);
  uint8_t deleted[2];
  ASSERT_EQ(tw_client_delete(client_, digest_, keys + 32, 1, deleted, 0), TW_OK);
  EXPECT_EQ(deleted[0], 1);
  get.miss = TW_MISS_NONE;
  ASSERT_EQ(tw_client_get(client_, &get, 1, 0, 0), TW_OK);
  EXPECT_EQ(get.miss, TW_MISS_ABSENT);
  EXPECT_EQ(get.tier, TW_TIER_NONE);

  char small[8];
  size_t needed = 0;
  EXPECT_EQ(tw_client_stats(client_, small, sizeof small, &needed, 0), TW_E_RESOURCE_EXHAUSTED);
  std::string buf(needed, '\0');
  ASSERT_EQ(tw_client_stats(client_, buf.data(), buf.size(), &needed, 0), TW_OK);
  auto j = nlohmann::json::parse(buf.c_str());
  EXPECT_GE(j["tiers"]["dram"]["hits"].get<uint64_t>(), 1u);
  EXPECT_EQ(j["puts"]["stored"], 2);
  EXPECT_EQ(tw_client_ping(client_, 0), TW_OK);
}

// A twd that answers out of order on request (the real one may, but not on demand).
class CApiClientMisbehaving : public CApiClient {
 protected:
  std::string StartServer() override {
    EXPECT_TRUE(fake_.Start((dir_ / "twd.sock").string()).ok());
    return fake_.socket_path();
  }
  tw::client::testing::MisbehavingTwd fake_;
};

TEST_F(CApiClientMisbehaving, AsyncCallsCompleteOutOfOrder) {
  fake_.reverse_window = 4;
  uint8_t keys[4][32];
  uint32_t tokens[4][2];
  tw_put_item put[4] = {};
  tw_future* futures[4] = {};
  uint64_t size = 0;
  tw_client_arena(client_, &size);
  tw_scatter sc = {0, 0, 64, 0};
  const uint8_t* parent = digest_;
  for (int j = 0; j < 4; ++j) {
    tokens[j][0] = 2 * j;
    tokens[j][1] = 2 * j + 1;
    ASSERT_EQ(tw_chunk_key(parent, nullptr, 0, tokens[j], 2, keys[j]), TW_OK);
    put[j].key = keys[j];
    put[j].parent = parent;
    put[j].namespace_digest = digest_;
    put[j].tokens = tokens[j];
    put[j].n_tokens = 2;
    put[j].scatter = &sc;
    put[j].n_scatter = 1;
    put[j].result = -1;
    parent = keys[j];
    ASSERT_EQ(tw_client_put_async(client_, &put[j], 1, TW_DURABILITY_MEMORY, 0, &futures[j]),
              TW_OK);
  }
  // Nothing is answered until the fourth request arrives; then all in reverse order.
  for (int j = 3; j >= 0; --j) {
    EXPECT_EQ(tw_future_wait(futures[j], 5000), TW_OK) << tw_last_error();
    EXPECT_EQ(put[j].result, TW_PUT_STORED);
    EXPECT_EQ(tw_future_ready(futures[j]), 1);
    EXPECT_EQ(tw_future_wait(futures[j], 0), TW_OK);  // a second wait answers the same
    tw_future_free(futures[j]);
  }
  // A future whose answer is held back reports "not yet" without being consumed.
  tw_lookup_result lr = {};
  tw_future* f = nullptr;
  ASSERT_EQ(tw_client_lookup_async(client_, digest_, &keys[0][0], 4, 1, 0, 0, &lr, &f), TW_OK);
  EXPECT_EQ(tw_future_wait(f, 50), TW_E_DEADLINE_EXCEEDED);
  EXPECT_EQ(tw_future_ready(f), 0);
  tw_future_free(f);  // freed before completion: results are never written
}

TEST_F(CApiClient, InvalidArgumentsAreRefusedBeforeSending) {
  tw_put_item put = {};
  EXPECT_EQ(tw_client_put(client_, &put, 1, TW_DURABILITY_MEMORY, 0), TW_E_INVALID_ARGUMENT);
  EXPECT_EQ(tw_client_put(client_, &put, 0, 7, 0), TW_E_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tw_last_error()).find("durability"), std::string::npos);
  tw_lookup_result lr = {};
  EXPECT_EQ(tw_client_lookup(client_, digest_, nullptr, 0, 0, 0, 0, &lr), TW_E_INVALID_ARGUMENT);
  uint8_t out[32];
  EXPECT_EQ(tw_client_namespace_digest(client_, 5, out), TW_E_INVALID_ARGUMENT);
  tw_client* none = nullptr;
  tw_client_options o = {};
  EXPECT_EQ(tw_client_connect(&o, &none), TW_E_INVALID_ARGUMENT);
  std::string missing = (dir_ / "missing.sock").string();
  o.socket_path = missing.c_str();
  o.arena_size = 1 << 20;
  EXPECT_EQ(tw_client_connect(&o, &none), TW_E_NOT_FOUND);
  EXPECT_NE(std::string(tw_last_error()).find("missing.sock"), std::string::npos);
  EXPECT_EQ(none, nullptr);
}

}  // namespace
