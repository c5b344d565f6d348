// The Fetch stream's raw encoding (sidecar/mesh/src/net/fetch_wire.h) against protobuf's own:
// a message that DataMessage builds parses as FetchChunk; a FetchChunk serialized by protobuf
// and cut into slices at every awkward place (inside the tag, the length, the data) walks to
// the same bytes; truncated and malformed messages are errors; the packed Locate varints.
#include "fetch_wire.h"

#include <grpcpp/support/slice.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tokenwarehouse/v1/peer.pb.h"

namespace tw::mesh::net {
namespace {

namespace pb = ::tokenwarehouse::v1;

std::string Bytes(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed) & 0xff);
  return s;
}

std::string Flatten(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(b.Dump(&slices).ok());
  std::string out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// `wire` cut into slices ending at each of `cuts` (offsets).
grpc::ByteBuffer Cut(const std::string& wire, const std::vector<size_t>& cuts) {
  std::vector<grpc::Slice> slices;
  size_t at = 0;
  for (size_t c : cuts) {
    slices.emplace_back(wire.data() + at, c - at);
    at = c;
  }
  slices.emplace_back(wire.data() + at, wire.size() - at);
  return grpc::ByteBuffer(slices.data(), slices.size());
}

struct Walked {
  Status status;
  std::optional<std::string> header;
  std::string data;
  size_t runs = 0;
};

Walked Walk(const grpc::ByteBuffer& b, bool allow_header = true) {
  Walked w;
  w.status =
      WalkFetchChunk(b, allow_header ? &w.header : nullptr, [&](const std::byte* p, size_t n) {
        w.data.append(reinterpret_cast<const char*>(p), n);
        ++w.runs;
        return OkStatus();
      });
  return w;
}

TEST(FetchWireTest, DataMessageIsAFetchChunkAndKeepsItsOwnerAlive) {
  auto owner = std::make_shared<std::string>(Bytes(300000, 1));
  std::weak_ptr<std::string> weak = owner;
  {
    grpc::ByteBuffer b =
        DataMessage(reinterpret_cast<const std::byte*>(owner->data()), owner->size(), owner);
    const std::string expected = *owner;
    owner.reset();
    EXPECT_FALSE(weak.expired());  // the slice holds it
    pb::FetchChunk parsed;
    ASSERT_TRUE(parsed.ParseFromString(Flatten(b)));
    EXPECT_FALSE(parsed.has_header());
    EXPECT_EQ(parsed.data(), expected);
  }
  EXPECT_TRUE(weak.expired());  // released with the last slice
}

TEST(FetchWireTest, WalksProtobufsEncodingCutAnywhere) {
  pb::FetchChunk m;
  m.set_data(Bytes(200, 2));  // a two-byte length
  const std::string wire = m.SerializeAsString();
  for (size_t cut = 1; cut < wire.size(); ++cut) {
    Walked w = Walk(Cut(wire, {cut}));
    ASSERT_TRUE(w.status.ok()) << cut << ": " << w.status.ToString();
    EXPECT_EQ(w.data, m.data()) << cut;
    EXPECT_FALSE(w.header.has_value());
  }
  Walked w = Walk(Cut(wire, {1, 2, 3, 50, 51, 150}));
  ASSERT_TRUE(w.status.ok());
  EXPECT_EQ(w.data, m.data());
  EXPECT_EQ(w.runs, 4u);  // the data field spans four slices: handed over as four runs
}

TEST(FetchWireTest, HeaderIsCollectedEvenWhenEmptyAndUnknownFieldsAreSkipped) {
  pb::FetchChunk m;
  m.mutable_header();  // present, all defaults: zero bytes of header
  std::string wire = m.SerializeAsString();
  // Unknown fields of every wire type: varint 9, fixed64 10, length 11, fixed32 12.
  wire += std::string("\x48\x96\x01", 3) + std::string("\x51", 1) + std::string(8, 'x') +
          std::string("\x5a\x02zz", 4) + std::string("\x65", 1) + std::string(4, 'y');
  Walked w = Walk(Cut(wire, {1, 4}));
  ASSERT_TRUE(w.status.ok()) << w.status.ToString();
  ASSERT_TRUE(w.header.has_value());
  EXPECT_TRUE(w.header->empty());
  EXPECT_TRUE(w.data.empty());

  pb::FetchChunk h;
  h.mutable_header()->set_value_size(12345);
  h.mutable_header()->add_segment_sizes(12345);
  Walked hw = Walk(SerializedMessage(h.SerializeAsString()));
  ASSERT_TRUE(hw.status.ok());
  pb::FetchHeader parsed;
  ASSERT_TRUE(parsed.ParseFromString(*hw.header));
  EXPECT_EQ(parsed.value_size(), 12345u);
  EXPECT_FALSE(Walk(SerializedMessage(h.SerializeAsString()), false).status.ok())
      << "a header where only data may come";
}

TEST(FetchWireTest, TruncatedOrMalformedMessagesAreErrors) {
  pb::FetchChunk m;
  m.set_data(Bytes(1000, 3));
  const std::string wire = m.SerializeAsString();
  for (size_t len : {size_t{1}, size_t{2}, size_t{500}, wire.size() - 1}) {
    Walked w = Walk(Cut(wire.substr(0, len), {}));
    EXPECT_FALSE(w.status.ok()) << len;
  }
  EXPECT_FALSE(Walk(Cut(std::string("\x13", 1), {})).status.ok());   // wire type 3 (group)
  EXPECT_FALSE(Walk(Cut(std::string(11, '\xff'), {})).status.ok());  // a varint too long
  // A failing consumer stops the walk with its status.
  Status st = WalkFetchChunk(Cut(wire, {}), nullptr,
                             [](const std::byte*, size_t) { return InternalError("full"); });
  EXPECT_EQ(st.code(), StatusCode::kInternal);
}

TEST(FetchWireTest, VarintsRoundTrip) {
  std::string s;
  const std::vector<uint64_t> values = {0, 1, 127, 128, 300, 1u << 31, ~uint64_t{0}};
  for (uint64_t v : values) AppendVarint(&s, v);
  std::string_view in = s;
  for (uint64_t v : values) {
    uint64_t got = 0;
    ASSERT_TRUE(ReadVarint(&in, &got));
    EXPECT_EQ(got, v);
  }
  EXPECT_TRUE(in.empty());
  uint64_t got = 0;
  std::string_view cut("\x80", 1);
  EXPECT_FALSE(ReadVarint(&cut, &got));
}

}  // namespace
}  // namespace tw::mesh::net
