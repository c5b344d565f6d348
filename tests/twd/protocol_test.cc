// The frame codec and message validation of tw_protocol: partial input, hostile headers,
// every structural check of the request messages.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "tw/protocol/fd_passing.h"
#include "tw/protocol/frame.h"
#include "tw/protocol/messages.h"

namespace tw::protocol {
namespace {

FrameHeader Header(Opcode op, uint64_t id = 7) {
  FrameHeader h;
  h.opcode = op;
  h.request_id = id;
  return h;
}

TEST(FrameTest, RoundTripAndConsumed) {
  std::string f = EncodeFrame(Header(Opcode::kPing, 42), "body");
  f += "trailing";
  DecodedFrame d = DecodeFrame(f, DecodeLimits{});
  ASSERT_EQ(d.state, DecodeState::kFrame) << d.error.ToString();
  EXPECT_EQ(d.consumed, kHeaderSize + 4);
  EXPECT_EQ(d.header.opcode, Opcode::kPing);
  EXPECT_EQ(d.header.request_id, 42u);
  EXPECT_EQ(d.body, "body");
}

TEST(FrameTest, EveryPrefixNeedsMore) {
  const std::string f = EncodeFrame(Header(Opcode::kGet), std::string(100, 'x'));
  for (size_t n = 0; n < f.size(); ++n) {
    DecodedFrame d = DecodeFrame(std::string_view(f.data(), n), DecodeLimits{});
    EXPECT_EQ(d.state, DecodeState::kNeedMore) << n;
    EXPECT_EQ(d.consumed, 0u);
  }
  EXPECT_EQ(DecodeFrame(f, DecodeLimits{}).state, DecodeState::kFrame);
}

TEST(FrameTest, BadMagicFailsOnTheFirstByte) {
  EXPECT_EQ(DecodeFrame(std::string_view("G"), DecodeLimits{}).state, DecodeState::kError);
  EXPECT_EQ(DecodeFrame(std::string_view("GET / HTTP/1.1\r\n"), DecodeLimits{}).state,
            DecodeState::kError);
}

TEST(FrameTest, WrongVersionIsUnimplemented) {
  std::string f = EncodeFrame(Header(Opcode::kPing), "");
  f[4] = 2;
  DecodedFrame d = DecodeFrame(std::string_view(f.data(), 6), DecodeLimits{});
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_EQ(d.error.code(), StatusCode::kUnimplemented);
}

TEST(FrameTest, UnknownOpcodeFlagsAndDirection) {
  FrameHeader h = Header(Opcode::kPing);
  h.opcode = static_cast<Opcode>(999);
  EXPECT_EQ(DecodeFrame(EncodeFrame(h, ""), DecodeLimits{}).error.code(),
            StatusCode::kUnimplemented);
  h = Header(Opcode::kPing);
  h.flags = 1u << 7;
  EXPECT_EQ(DecodeFrame(EncodeFrame(h, ""), DecodeLimits{}).state, DecodeState::kError);
  h.flags = kFlagResponse;  // a server does not accept responses
  EXPECT_EQ(DecodeFrame(EncodeFrame(h, ""), DecodeLimits{}).state, DecodeState::kError);
  DecodeLimits client;
  client.expect_response = true;
  EXPECT_EQ(DecodeFrame(EncodeFrame(h, ""), client).state, DecodeState::kFrame);
  h.flags = kFlagResponse | kFlagError;
  h.opcode = Opcode::kInvalid;  // error reply to an undecodable frame
  EXPECT_EQ(DecodeFrame(EncodeFrame(h, ""), client).state, DecodeState::kFrame);
}

TEST(FrameTest, FlagsToString) {
  EXPECT_EQ(FlagsToString(0), "");
  EXPECT_EQ(FlagsToString(kFlagResponse | kFlagMore), "response|more");
  EXPECT_EQ(FlagsToString(kFlagError | (1u << 9)), "error|0x200");
}

TEST(FrameTest, OversizeBodyFailsBeforeItArrives) {
  FrameHeader h = Header(Opcode::kPut);
  std::string f = EncodeFrame(h, "");
  // Claim 1 GiB of body.
  uint32_t len = 1u << 30;
  std::memcpy(f.data() + 20, &len, 4);
  DecodeLimits limits;
  limits.max_body = 1 << 20;
  DecodedFrame d = DecodeFrame(f, limits);
  ASSERT_EQ(d.state, DecodeState::kError);
  EXPECT_EQ(d.error.code(), StatusCode::kResourceExhausted);
  limits.max_body = UINT32_MAX;  // the hard cap still applies
  EXPECT_EQ(DecodeFrame(f, limits).state, DecodeState::kError);
}

MessageLimits Limits(uint64_t arena = 1 << 20) {
  MessageLimits l;
  l.arena_size = arena;
  l.max_batch = 8;
  return l;
}

std::string K(char c) { return std::string(32, c); }

pb::GetRequest GetWithRanges(std::vector<std::pair<uint64_t, uint64_t>> ranges) {
  pb::GetRequest r;
  auto* item = r.add_items();
  item->mutable_ref()->set_key(K('k'));
  item->mutable_ref()->set_namespace_digest(K('n'));
  for (auto [off, len] : ranges) {
    auto* e = item->add_ranges();
    e->set_length(len);
    e->set_arena_offset(off);
  }
  return r;
}

TEST(MessagesTest, GetRangesInsideArenaAndDisjoint) {
  EXPECT_TRUE(ValidateGet(GetWithRanges({{0, 100}, {100, 100}}), Limits()).ok());
  EXPECT_FALSE(ValidateGet(GetWithRanges({{0, 100}, {50, 100}}), Limits()).ok());  // overlap
  EXPECT_FALSE(ValidateGet(GetWithRanges({{(1 << 20) - 10, 11}}), Limits()).ok());
  EXPECT_FALSE(ValidateGet(GetWithRanges({{UINT64_MAX - 5, 10}}), Limits()).ok());  // wraps
  EXPECT_FALSE(ValidateGet(GetWithRanges({{0, 0}}), Limits()).ok());                // empty
  EXPECT_FALSE(ValidateGet(GetWithRanges({{0, 100}}), Limits(0)).ok());             // no arena
}

TEST(MessagesTest, KeyLengthsAndBatch) {
  pb::ExistsRequest r;
  auto* ref = r.add_items();
  ref->set_key(std::string(31, 'k'));
  ref->set_namespace_digest(K('n'));
  EXPECT_EQ(ValidateKeyRefs(r.items(), Limits()).code(), StatusCode::kInvalidArgument);
  ref->set_key(K('k'));
  EXPECT_TRUE(ValidateKeyRefs(r.items(), Limits()).ok());
  for (int i = 0; i < 8; ++i) *r.add_items() = *ref;
  EXPECT_EQ(ValidateKeyRefs(r.items(), Limits()).code(), StatusCode::kResourceExhausted);
}

TEST(MessagesTest, ExportFiltersAreKeys) {
  pb::ExportRequest r;
  EXPECT_TRUE(ValidateExport(r).ok());
  r.set_key(K('k'));
  r.set_namespace_digest(K('n'));
  EXPECT_TRUE(ValidateExport(r).ok());
  r.set_key(std::string(5, 'k'));
  EXPECT_EQ(ValidateExport(r).code(), StatusCode::kInvalidArgument);
  r.set_key(K('k'));
  r.set_namespace_digest(std::string(33, 'n'));
  EXPECT_EQ(ValidateExport(r).code(), StatusCode::kInvalidArgument);
}

// Distinct 32-byte keys.
std::vector<Key> Keys(size_t n) {
  std::vector<Key> keys(n);
  for (size_t i = 0; i < n; ++i) {
    keys[i].bytes[0] = static_cast<uint8_t>(i);
    keys[i].bytes[1] = static_cast<uint8_t>(i >> 8);
    keys[i].bytes[31] = 0xA5;
  }
  return keys;
}

pb::LookupRequest LookupOf(const std::vector<Key>& keys, bool packed) {
  pb::LookupRequest r;
  pb::KeyChain* chain = r.add_items()->add_chains();
  chain->set_namespace_digest(K('n'));
  SetChainKeys(keys, packed, chain);
  return r;
}

TEST(MessagesTest, LookupKeysInEitherFormReadTheSame) {
  const std::vector<Key> keys = Keys(5);
  for (bool packed : {false, true}) {
    // Through the wire: encode, parse, validate, read the keys back.
    const pb::LookupRequest sent = LookupOf(keys, packed);
    EXPECT_EQ(sent.items(0).chains(0).keys_size(), packed ? 0 : 5);
    EXPECT_EQ(sent.items(0).chains(0).packed_keys().size(), packed ? 5u * 32 : 0u);
    auto parsed = ParseRequest(Opcode::kLookup, sent.SerializeAsString(), Limits());
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    const auto& chain = static_cast<const pb::LookupRequest&>(**parsed).items(0).chains(0);
    EXPECT_EQ(ChainLength(chain), 5u);
    std::vector<Key> scratch;
    auto back = ChainKeysView(chain, {}, ArenaKeys::kCopy, &scratch);
    EXPECT_EQ(std::vector<Key>(back.begin(), back.end()), keys) << (packed ? "packed" : "repeated");
  }
  // An empty chain is valid in both forms.
  EXPECT_TRUE(ValidateLookup(LookupOf({}, true), Limits()).ok());
  EXPECT_EQ(ChainLength(LookupOf({}, true).items(0).chains(0)), 0u);
}

// Version 3: the keys lie in the arena; the message names where.
pb::LookupRequest ArenaLookupOf(uint64_t offset, uint32_t count) {
  pb::LookupRequest r;
  pb::KeyChain* chain = r.add_items()->add_chains();
  chain->set_namespace_digest(K('n'));
  chain->set_keys_arena_offset(offset);
  chain->set_keys_count(count);
  return r;
}

TEST(MessagesTest, LookupKeysInTheArenaAreReadInPlaceOrCopied) {
  const std::vector<Key> keys = Keys(5);
  std::vector<uint8_t> arena(4096, 0);
  std::memcpy(arena.data() + 100, keys.data(), keys.size() * sizeof(Key));  // unaligned
  const pb::LookupRequest sent = ArenaLookupOf(100, 5);
  auto parsed = ParseRequest(Opcode::kLookup, sent.SerializeAsString(), Limits(arena.size()));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const auto& chain = static_cast<const pb::LookupRequest&>(**parsed).items(0).chains(0);
  EXPECT_EQ(ChainLength(chain), 5u);
  std::vector<Key> scratch;
  auto in_place = ChainKeysView(chain, arena, ArenaKeys::kInPlace, &scratch);
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(in_place.data()), arena.data() + 100);
  EXPECT_EQ(std::vector<Key>(in_place.begin(), in_place.end()), keys);
  auto copied = ChainKeysView(chain, arena, ArenaKeys::kCopy, &scratch);
  EXPECT_EQ(copied.data(), scratch.data());
  // A copy does not change when the client rewrites its arena afterwards.
  std::memset(arena.data(), 0, arena.size());
  EXPECT_EQ(std::vector<Key>(copied.begin(), copied.end()), keys);
  EXPECT_NE(std::vector<Key>(in_place.begin(), in_place.end()), keys);
  // The other forms read the same through the view; packed ones are not copied.
  for (bool packed : {false, true}) {
    const pb::LookupRequest r = LookupOf(keys, packed);
    auto v = ChainKeysView(r.items(0).chains(0), arena, ArenaKeys::kInPlace, &scratch);
    EXPECT_EQ(std::vector<Key>(v.begin(), v.end()), keys);
    EXPECT_EQ(v.data() == scratch.data(), !packed);
  }
}

TEST(MessagesTest, HostileArenaKeys) {
  const uint64_t arena = 4096;
  // Inside, up to the last byte.
  EXPECT_TRUE(ValidateLookup(ArenaLookupOf(arena - 32 * 4, 4), Limits(arena)).ok());
  // Outside: one byte over, an offset past the end, an offset that wraps, no arena at all.
  for (auto [offset, count] : std::vector<std::pair<uint64_t, uint32_t>>{
           {arena - 32 * 4 + 1, 4}, {arena, 1}, {~uint64_t{0} - 31, 1}, {0, 200}}) {
    Status s = ValidateLookup(ArenaLookupOf(offset, count), Limits(arena));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << offset << " " << count;
    EXPECT_NE(s.message().find("keys_arena_offset"), std::string_view::npos) << s.message();
  }
  EXPECT_EQ(ValidateLookup(ArenaLookupOf(0, 1), Limits(0)).code(), StatusCode::kInvalidArgument);
  // Longer than max_chain.
  MessageLimits small = Limits(arena);
  small.max_chain = 4;
  EXPECT_EQ(ValidateLookup(ArenaLookupOf(0, 5), small).code(), StatusCode::kResourceExhausted);
  // An offset without a count; a count with keys in the message too.
  EXPECT_EQ(ValidateLookup(ArenaLookupOf(64, 0), Limits(arena)).code(),
            StatusCode::kInvalidArgument);
  for (bool packed : {false, true}) {
    pb::LookupRequest r = LookupOf(Keys(2), packed);
    r.mutable_items(0)->mutable_chains(0)->set_keys_count(2);
    Status s = ValidateLookup(r, Limits(arena));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << packed;
    EXPECT_NE(s.message().find("more than one"), std::string_view::npos) << s.message();
  }
}

TEST(MessagesTest, HostilePackedKeys) {
  // Not a multiple of 32 bytes: one byte short, one byte over.
  for (size_t len : {size_t{31}, size_t{33}, size_t{32 * 3 - 1}}) {
    pb::LookupRequest r = LookupOf({}, true);
    r.mutable_items(0)->mutable_chains(0)->set_packed_keys(std::string(len, 'k'));
    Status s = ValidateLookup(r, Limits());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << len;
    EXPECT_NE(s.message().find("packed_keys"), std::string_view::npos) << s.message();
  }
  // Both forms at once.
  {
    pb::LookupRequest r = LookupOf(Keys(2), true);
    r.mutable_items(0)->mutable_chains(0)->add_keys(K('k'));
    EXPECT_EQ(ValidateLookup(r, Limits()).code(), StatusCode::kInvalidArgument);
  }
  // Longer than max_chain, in either form; and too many keys over all chains.
  MessageLimits small = Limits();
  small.max_chain = 4;
  for (bool packed : {false, true}) {
    EXPECT_TRUE(ValidateLookup(LookupOf(Keys(4), packed), small).ok());
    EXPECT_EQ(ValidateLookup(LookupOf(Keys(5), packed), small).code(),
              StatusCode::kResourceExhausted);
    pb::LookupRequest many = LookupOf(Keys(4), packed);
    for (int c = 0; c < 16; ++c) *many.mutable_items(0)->add_chains() = many.items(0).chains(0);
    EXPECT_EQ(ValidateLookup(many, small).code(), StatusCode::kResourceExhausted);
  }
  // A short key in the repeated form is still named.
  pb::LookupRequest r = LookupOf(Keys(2), false);
  r.mutable_items(0)->mutable_chains(0)->set_keys(1, std::string(31, 'k'));
  Status s = ValidateLookup(r, Limits());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("keys[1]"), std::string_view::npos) << s.message();
  // A short namespace digest.
  r = LookupOf(Keys(1), true);
  r.mutable_items(0)->mutable_chains(0)->set_namespace_digest("short");
  EXPECT_EQ(ValidateLookup(r, Limits()).code(), StatusCode::kInvalidArgument);
}

pb::PutRequest PutWith(std::vector<uint64_t> sizes,
                       std::vector<std::tuple<uint32_t, uint64_t, uint64_t, uint64_t>> ranges) {
  pb::PutRequest r;
  auto* item = r.add_items();
  item->mutable_ref()->set_key(K('k'));
  item->mutable_ref()->set_namespace_digest(K('n'));
  item->set_parent(K('n'));
  item->add_tokens(1);
  for (uint64_t s : sizes) item->add_segment_sizes(s);
  for (auto [seg, off, len, arena] : ranges) {
    auto* e = item->add_ranges();
    e->set_segment(seg);
    e->set_offset(off);
    e->set_length(len);
    e->set_arena_offset(arena);
  }
  return r;
}

TEST(MessagesTest, PutRangesCoverEachSegmentExactlyOnce) {
  EXPECT_TRUE(ValidatePut(PutWith({100, 50}, {{0, 0, 100, 0}, {1, 0, 50, 100}}), Limits()).ok());
  // Split segment, out of order: still fine.
  EXPECT_TRUE(ValidatePut(PutWith({100}, {{0, 60, 40, 500}, {0, 0, 60, 0}}), Limits()).ok());
  EXPECT_FALSE(ValidatePut(PutWith({100}, {{0, 0, 90, 0}}), Limits()).ok());  // gap
  EXPECT_FALSE(ValidatePut(PutWith({100}, {{0, 0, 60, 0}, {0, 50, 50, 200}}), Limits()).ok());
  EXPECT_FALSE(ValidatePut(PutWith({100}, {{1, 0, 100, 0}}), Limits()).ok());  // no segment 1
  EXPECT_FALSE(ValidatePut(PutWith({0}, {}), Limits()).ok());                  // empty value
  MessageLimits small = Limits();
  small.max_value_size = 99;
  EXPECT_EQ(ValidatePut(PutWith({100}, {{0, 0, 100, 0}}), small).code(),
            StatusCode::kResourceExhausted);
}

TEST(MessagesTest, ParseRequestRejectsGarbageAndUnknownOps) {
  EXPECT_FALSE(ParseRequest(Opcode::kGet, "\xff\xff\xff", Limits()).ok());
  EXPECT_EQ(ParseRequest(static_cast<Opcode>(500), "", Limits()).status().code(),
            StatusCode::kUnimplemented);
  auto ok = ParseRequest(Opcode::kPing, "", Limits());
  EXPECT_TRUE(ok.ok());
}

TEST(MessagesTest, HelloVersionRange) {
  pb::HelloRequest h;
  EXPECT_FALSE(ValidateHello(h, Limits()).ok());
  h.set_min_version(2);
  h.set_max_version(1);
  EXPECT_FALSE(ValidateHello(h, Limits()).ok());
  h.set_min_version(1);
  EXPECT_TRUE(ValidateHello(h, Limits()).ok());
}

TEST(MessagesTest, ErrorFrameRoundTrip) {
  std::string f = EncodeError(Opcode::kGet, 9, PermissionDeniedError("nope"), true);
  DecodeLimits client;
  client.expect_response = true;
  DecodedFrame d = DecodeFrame(f, client);
  ASSERT_EQ(d.state, DecodeState::kFrame);
  EXPECT_TRUE(d.header.flags & kFlagError);
  pb::ErrorReply e;
  ASSERT_TRUE(ParseBody(d.body, &e).ok());
  EXPECT_TRUE(e.fatal());
  EXPECT_EQ(ErrorReplyToStatus(e).code(), StatusCode::kPermissionDenied);
}

// Pages of `a` the kernel holds for its memfd (mincore).
size_t ResidentPages(const Arena& a) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> v(a.size() / page);
  if (::mincore(a.data(), a.size(), v.data()) != 0) return SIZE_MAX;
  size_t n = 0;
  for (unsigned char c : v) n += c & 1;
  return n;
}

TEST(ArenaTest, PopulateMapsAllocatedPagesAndAllocatesNone) {
  const uint64_t size = uint64_t{8} << 20;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  auto fd = CreateArenaMemfd("populate-test", size);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  // The owner allocates the first half only (a client that skipped part of its pre-fault).
  auto owner = Arena::Map(fd->get(), size, false);
  ASSERT_TRUE(owner.ok());
  for (uint64_t off = 0; off < size / 2; off += page) owner->data()[off] = 7;
  auto peer = Arena::Map(fd->get(), size, false);
  ASSERT_TRUE(peer.ok());
  ASSERT_EQ(ResidentPages(*peer), size / 2 / page);
  EXPECT_TRUE(peer->Populate(0, size).ok());
  EXPECT_TRUE(peer->Populate(size - 1, 100).ok());   // clamped to the arena
  EXPECT_TRUE(peer->Populate(size, 100).ok());       // past the end: nothing
  EXPECT_EQ(ResidentPages(*peer), size / 2 / page);  // no hole was allocated
  // The populated pages are the owner's: writes through either mapping meet.
  peer->data()[page] = 9;
  EXPECT_EQ(owner->data()[page], 9);
  EXPECT_EQ(peer->data()[0], 7);
}

}  // namespace
}  // namespace tw::protocol
