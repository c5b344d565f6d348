#include "tw/common/keys.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace tw {
namespace {

nlohmann::json LoadVectors() {
  std::ifstream in(std::string(TW_SOURCE_DIR) + "/tests/common/key_vectors.json");
  EXPECT_TRUE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

Namespace FromJson(const nlohmann::json& j) {
  Namespace ns;
  for (size_t i = 0; i < kNamespaceFieldCount; ++i) {
    ns.*kNamespaceFields[i] = j.at(std::string(kNamespaceFieldNames[i])).get<std::string>();
  }
  return ns;
}

Namespace Base() {
  Namespace ns;
  ns.model = "m";
  ns.model_revision = "r";
  ns.tokenizer = "t";
  ns.kv_dtype = "bf16";
  ns.kv_layout = "vllm";
  ns.parallel = "tp=0/1,pp=0/1";
  ns.adapter = "";
  ns.tenant = "default";
  ns.chunk_tokens = "4";
  return ns;
}

TEST(KeyVectors, EveryCaseMatchesTheReferenceImplementation) {
  nlohmann::json doc = LoadVectors();
  ASSERT_GE(doc["cases"].size(), 10u);
  for (const auto& c : doc["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto normalized = NormalizeNamespace(FromJson(c["namespace"]));
    ASSERT_TRUE(normalized.ok()) << normalized.status().ToString();
    EXPECT_EQ(*normalized, FromJson(c["normalized"]));
    EXPECT_EQ(NamespaceDigest(*normalized).Hex(), c["ns_digest"].get<std::string>());
    std::vector<uint32_t> tokens = c["tokens"].get<std::vector<uint32_t>>();
    std::vector<std::string> extras;
    for (const auto& e : c["extras"]) {
      auto raw = HexDecode(e.get<std::string>());
      ASSERT_TRUE(raw.ok());
      extras.emplace_back(raw->begin(), raw->end());
    }
    auto keys = ChunkKeys(*normalized, tokens, extras);
    ASSERT_TRUE(keys.ok()) << keys.status().ToString();
    ASSERT_EQ(keys->size(), c["keys"].size());
    for (size_t i = 0; i < keys->size(); ++i) {
      EXPECT_EQ((*keys)[i].Hex(), c["keys"][i].get<std::string>()) << "chunk " << i;
    }
  }
}

TEST(KeyVectors, RawDigestsHashFieldsAsGiven) {
  nlohmann::json doc = LoadVectors();
  ASSERT_GE(doc["raw_digests"].size(), 3u);
  for (const auto& c : doc["raw_digests"]) {
    EXPECT_EQ(NamespaceDigest(FromJson(c["namespace"])).Hex(), c["ns_digest"].get<std::string>());
  }
}

TEST(Keys, ChangingAnySingleNamespaceFieldChangesEveryKey) {
  std::vector<uint32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
  auto base = ChunkKeys(Base(), tokens);
  ASSERT_TRUE(base.ok());
  std::set<std::string> digests = {NamespaceDigest(Base()).Hex()};
  for (size_t i = 0; i < kNamespaceFieldCount; ++i) {
    SCOPED_TRACE(kNamespaceFieldNames[i]);
    Namespace ns = Base();
    if (kNamespaceFieldNames[i] == "chunk_tokens") {
      ns.chunk_tokens = "2";  // still a valid chunk size
    } else {
      ns.*kNamespaceFields[i] += "x";
    }
    EXPECT_TRUE(digests.insert(NamespaceDigest(ns).Hex()).second);
    auto keys = ChunkKeys(ns, tokens);
    ASSERT_TRUE(keys.ok());
    for (const Key& k : *keys) {
      for (const Key& b : *base) EXPECT_NE(k, b);
    }
  }
}

TEST(Keys, MovingBytesBetweenAdjacentFieldsChangesTheDigest) {
  for (size_t i = 0; i + 1 < kNamespaceFieldCount; ++i) {
    SCOPED_TRACE(kNamespaceFieldNames[i]);
    Namespace a = Base(), b = Base();
    a.*kNamespaceFields[i] = "ab";
    a.*kNamespaceFields[i + 1] = "c";
    b.*kNamespaceFields[i] = "a";
    b.*kNamespaceFields[i + 1] = "bc";
    EXPECT_NE(NamespaceDigest(a), NamespaceDigest(b));
  }
}

TEST(Keys, ChangingAnySingleTokenChangesItsChunkAndEveryLaterKey) {
  std::vector<uint32_t> tokens = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21};
  auto base = ChunkKeys(Base(), tokens);
  ASSERT_TRUE(base.ok());
  ASSERT_EQ(base->size(), 3u);
  for (size_t t = 0; t < tokens.size(); ++t) {
    std::vector<uint32_t> changed = tokens;
    changed[t] += 1;
    auto keys = ChunkKeys(Base(), changed);
    ASSERT_TRUE(keys.ok());
    size_t chunk = t / 4;
    for (size_t j = 0; j < 3; ++j) {
      if (j < chunk) {
        EXPECT_EQ((*keys)[j], (*base)[j]) << "token " << t << " chunk " << j;
      } else {
        EXPECT_NE((*keys)[j], (*base)[j]) << "token " << t << " chunk " << j;
      }
    }
  }
}

TEST(Keys, PartialTrailingChunkProducesNoKey) {
  for (size_t n = 0; n < 13; ++n) {
    std::vector<uint32_t> tokens(n, 7);
    auto keys = ChunkKeys(Base(), tokens);
    ASSERT_TRUE(keys.ok());
    EXPECT_EQ(keys->size(), n / 4);
  }
  // The full chunks' keys do not depend on the partial tail.
  auto a = ChunkKeys(Base(), std::vector<uint32_t>{1, 2, 3, 4, 5});
  auto b = ChunkKeys(Base(), std::vector<uint32_t>{1, 2, 3, 4, 9, 9, 9});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
}

TEST(Keys, ExtraBytesChangeTheKeyAndEmptyExtraEqualsNone) {
  std::vector<uint32_t> tokens = {1, 2, 3, 4};
  auto none = ChunkKeys(Base(), tokens);
  std::vector<std::string> empty = {""};
  auto with_empty = ChunkKeys(Base(), tokens, empty);
  std::vector<std::string> salt = {"salt"};
  auto salted = ChunkKeys(Base(), tokens, salt);
  ASSERT_TRUE(none.ok() && with_empty.ok() && salted.ok());
  EXPECT_EQ(*none, *with_empty);
  EXPECT_NE(*none, *salted);
}

TEST(Keys, ChunkKeyChainsFromTheNamespaceDigest) {
  std::vector<uint32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
  auto keys = ChunkKeys(Base(), tokens);
  ASSERT_TRUE(keys.ok());
  Key k1 = ChunkKey(NamespaceDigest(Base()), {}, std::span(tokens).subspan(0, 4));
  Key k2 = ChunkKey(k1, {}, std::span(tokens).subspan(4, 4));
  EXPECT_EQ((*keys)[0], k1);
  EXPECT_EQ((*keys)[1], k2);
}

TEST(Keys, InvalidChunkTokensIsAnError) {
  for (const char* bad : {"", "0", "-4", "abc", "4x", "99999999999"}) {
    Namespace ns = Base();
    ns.chunk_tokens = bad;
    auto keys = ChunkKeys(ns, std::vector<uint32_t>{1, 2, 3, 4});
    EXPECT_FALSE(keys.ok()) << bad;
    EXPECT_NE(keys.status().message().find("chunk_tokens"), std::string_view::npos);
  }
}

TEST(Normalize, CanonicalSpellings) {
  Namespace ns = Base();
  ns.kv_dtype = " BFLOAT16 ";
  ns.parallel = "pp=1/2, tp=3/8";
  ns.chunk_tokens = "0256";
  auto n = NormalizeNamespace(ns);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->kv_dtype, "bf16");
  EXPECT_EQ(n->parallel, "tp=3/8,pp=1/2");
  EXPECT_EQ(n->chunk_tokens, "256");
  auto again = NormalizeNamespace(*n);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *n);  // idempotent
  ns.parallel = "";
  EXPECT_EQ(NormalizeNamespace(ns)->parallel, "tp=0/1,pp=0/1");
  for (auto [in, out] :
       std::vector<std::pair<std::string, std::string>>{{"float16", "fp16"},
                                                        {"half", "fp16"},
                                                        {"float32", "fp32"},
                                                        {"fp8", "fp8_e4m3"},
                                                        {"torch.float8_e5m2", "fp8_e5m2"},
                                                        {"nvfp4", "nvfp4"}}) {
    ns.kv_dtype = in;
    EXPECT_EQ(NormalizeNamespace(ns)->kv_dtype, out) << in;
  }
}

TEST(Normalize, RejectsBadParallelNamingTheField) {
  for (const char* bad : {"tp=8/8", "tp=1", "tp=a/2", "tp=0/0", "x", "tp=0/2,tp=1/2", "a=1,a=2"}) {
    Namespace ns = Base();
    ns.parallel = bad;
    auto n = NormalizeNamespace(ns);
    EXPECT_FALSE(n.ok()) << bad;
    EXPECT_EQ(n.status().message().substr(0, 9), "parallel:") << n.status().message();
  }
}

TEST(Hex, RoundTripAndErrors) {
  Key k;
  for (size_t i = 0; i < 32; ++i) k.bytes[i] = static_cast<uint8_t>(i * 7 + 1);
  auto back = Key::FromHex(k.Hex());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, k);
  auto upper = Key::FromHex("AB" + k.Hex().substr(2));
  ASSERT_TRUE(upper.ok());
  EXPECT_EQ(upper->bytes[0], 0xAB);
  EXPECT_FALSE(Key::FromHex("abc").ok());
  EXPECT_FALSE(Key::FromHex(std::string(64, 'g')).ok());
  EXPECT_FALSE(HexDecode("a").ok());
  EXPECT_FALSE(Key::FromBytes("short").ok());
}

}  // namespace
}  // namespace tw
