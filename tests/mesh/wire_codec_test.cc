// The raw wire's frames (wire_codec.h), pure: round trips, every cut of a frame, and hostile
// bodies (wrong sizes, indices past the names, trailing bytes, unknown types and versions).
#include "wire_codec.h"

#include <gtest/gtest.h>

#include "fake_clock.h"

namespace tw::mesh::net {
namespace {

using testing::TestKey;

std::vector<std::string> HoldersOf(const LocateAnswer& a, size_t k) {
  std::vector<std::string> out;
  for (uint32_t j = a.offsets[k]; j < a.offsets[k + 1]; ++j) out.push_back(a.names[a.index[j]]);
  return out;
}

TEST(WireCodecTest, HeaderRoundTripsAndRefusesUnknownTypesVersionsAndHugeBodies) {
  auto h = EncodeWireHeader(WireType::kFetchHeader, 1234);
  auto d = DecodeWireHeader(h);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->type, WireType::kFetchHeader);
  EXPECT_EQ(d->body, 1234u);
  auto bad = h;
  bad[1] = 2;  // version
  EXPECT_EQ(DecodeWireHeader(bad).status().code(), StatusCode::kInvalidArgument);
  bad = h;
  bad[0] = 0;
  EXPECT_FALSE(DecodeWireHeader(bad).ok());
  bad[0] = 6;
  EXPECT_FALSE(DecodeWireHeader(bad).ok());
  bad = h;
  bad[2] = 1;
  EXPECT_FALSE(DecodeWireHeader(bad).ok());
  EXPECT_FALSE(DecodeWireHeader(EncodeWireHeader(WireType::kLocate, kMaxWireBody + 1)).ok());
  EXPECT_TRUE(DecodeWireHeader(EncodeWireHeader(WireType::kLocate, kMaxWireBody)).ok());
}

TEST(WireCodecTest, LocateRoundTripsAndRefusesPartialKeys) {
  std::vector<Key> keys = {TestKey(1), TestKey(2), TestKey(3)};
  const std::string body = EncodeLocate(keys);
  ASSERT_EQ(body.size(), 96u);
  auto d = DecodeLocate(body);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, keys);
  for (size_t cut = 1; cut < 32; ++cut) {
    EXPECT_FALSE(DecodeLocate(std::string_view(body).substr(0, body.size() - cut)).ok()) << cut;
  }
  EXPECT_TRUE(DecodeLocate("").ok());
  EXPECT_FALSE(DecodeLocate(std::string(32 * (kMaxLocateKeys + 1), 'k')).ok());
}

TEST(WireCodecTest, LocateAnswerRoundTripsAndEveryCutIsAnError) {
  const std::vector<std::string> names = {"node-a", "b", std::string(300, 'c')};
  // Four keys: {a, b}, {}, {c}, {b, c, a}.
  const std::vector<uint32_t> offsets = {0, 2, 2, 3, 6};
  const std::vector<uint32_t> holders = {0, 1, 2, 1, 2, 0};
  const std::string body = EncodeLocateAnswer(names, offsets, holders);
  auto d = DecodeLocateAnswer(body, 4);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->names, names);
  ASSERT_EQ(d->offsets.size(), 5u);
  EXPECT_EQ(HoldersOf(*d, 0), (std::vector<std::string>{"node-a", "b"}));
  EXPECT_TRUE(HoldersOf(*d, 1).empty());
  EXPECT_EQ(HoldersOf(*d, 2), (std::vector<std::string>{names[2]}));
  EXPECT_EQ(HoldersOf(*d, 3), (std::vector<std::string>{"b", names[2], "node-a"}));
  for (size_t n = 0; n < body.size(); ++n) {
    EXPECT_FALSE(DecodeLocateAnswer(std::string_view(body).substr(0, n), 4).ok()) << n;
  }
  EXPECT_FALSE(DecodeLocateAnswer(body, 3).ok());  // trailing bytes
  EXPECT_FALSE(DecodeLocateAnswer(body, 5).ok());  // too few keys
  // An index past the names.
  const std::vector<uint32_t> bad = {0, 1, 2, 1, 2, 3};
  EXPECT_FALSE(DecodeLocateAnswer(EncodeLocateAnswer(names, offsets, bad), 4).ok());
  // A count of names larger than the frame.
  EXPECT_FALSE(DecodeLocateAnswer("\xff\x01", 0).ok());
  // No names, no keys.
  auto empty = DecodeLocateAnswer(EncodeLocateAnswer({}, std::vector<uint32_t>{0}, {}), 0);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->names.empty());
  EXPECT_EQ(empty->offsets.size(), 1u);
}

TEST(WireCodecTest, FetchRequestRoundTripsAndRefusesShortBodies) {
  WireFetchRequest f;
  f.namespace_digest = TestKey(9);
  f.key = TestKey(10);
  f.budget_ns = 123456789012345ull;
  f.from_node = "gpu-b";
  const std::string body = EncodeFetch(f);
  auto d = DecodeFetch(body);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->namespace_digest, f.namespace_digest);
  EXPECT_EQ(d->key, f.key);
  EXPECT_EQ(d->budget_ns, f.budget_ns);
  EXPECT_EQ(d->from_node, "gpu-b");
  for (size_t n = 0; n < 72; ++n) EXPECT_FALSE(DecodeFetch(body.substr(0, n)).ok()) << n;
}

TEST(WireCodecTest, ErrorsCarryTheirCodeAndBadOnesAreInternal) {
  Status s = DecodeError(EncodeError(ResourceExhaustedError("too many")));
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "too many");
  EXPECT_EQ(DecodeError("ab").code(), StatusCode::kInternal);
  EXPECT_EQ(DecodeError(std::string("\0\0\0\0x", 5)).code(), StatusCode::kInternal);
  EXPECT_EQ(DecodeError(std::string("\x63\0\0\0x", 5)).code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace tw::mesh::net
