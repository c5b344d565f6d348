#include "tw/protocol/messages.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "tw/common/strings.h"

namespace tw::protocol {
namespace {

constexpr size_t kKeySize = sizeof(Key::bytes);

Status CheckKey(const std::string& raw, std::string_view what) {
  if (raw.size() != 32) {
    return InvalidArgumentError(StrCat(what, " must be 32 bytes, got ", raw.size()));
  }
  return OkStatus();
}

Status CheckBatch(int n, const MessageLimits& limits, std::string_view what) {
  if (n < 0 || static_cast<uint64_t>(n) > limits.max_batch) {
    return ResourceExhaustedError(
        StrCat(what, ": batch of ", n, " items exceeds max_batch ", limits.max_batch));
  }
  return OkStatus();
}

Status CheckKeyRef(const pb::KeyRef& ref, std::string_view what) {
  TW_RETURN_IF_ERROR(CheckKey(ref.key(), StrCat(what, ".key")));
  return CheckKey(ref.namespace_digest(), StrCat(what, ".namespace_digest"));
}

// An arena byte range [offset, offset + length).
struct Span {
  uint64_t offset;
  uint64_t length;
};

Status CheckInArena(uint64_t offset, uint64_t length, const MessageLimits& limits,
                    std::string_view what) {
  if (length == 0) return InvalidArgumentError(StrCat(what, ": zero-length range"));
  if (length > limits.arena_size || offset > limits.arena_size - length) {
    return InvalidArgumentError(StrCat(what, ": arena range [", offset, ", +", length,
                                       ") is outside the arena of ", limits.arena_size, " bytes"));
  }
  return OkStatus();
}

// Rejects overlapping arena ranges (in place sort).
Status CheckNoOverlap(std::vector<Span>& spans, std::string_view what) {
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.offset < b.offset; });
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i - 1].offset + spans[i - 1].length > spans[i].offset) {
      return InvalidArgumentError(
          StrCat(what, ": arena ranges overlap at offset ", spans[i].offset));
    }
  }
  return OkStatus();
}

Status CheckScatter(const google::protobuf::RepeatedPtrField<pb::ScatterEntry>& ranges,
                    const MessageLimits& limits, std::string_view what, std::vector<Span>* spans) {
  for (int i = 0; i < ranges.size(); ++i) {
    const pb::ScatterEntry& e = ranges[i];
    TW_RETURN_IF_ERROR(
        CheckInArena(e.arena_offset(), e.length(), limits, StrCat(what, ".ranges[", i, "]")));
    if (e.length() > limits.max_value_size || e.offset() > limits.max_value_size - e.length()) {
      return InvalidArgumentError(
          StrCat(what, ".ranges[", i, "]: segment range beyond max_value_size"));
    }
    if (e.segment() >= limits.max_segments) {
      return InvalidArgumentError(
          StrCat(what, ".ranges[", i, "]: segment ", e.segment(), " beyond max_segments"));
    }
    spans->push_back({e.arena_offset(), e.length()});
  }
  return OkStatus();
}

Status CheckNamespace(const pb::Namespace& ns, std::string_view what) {
  Namespace n = FromProto(ns);
  size_t total = 0;
  for (const auto& f : kNamespaceFields) total += (n.*f).size();
  if (total > 64 * 1024) return InvalidArgumentError(StrCat(what, ": fields too long"));
  return OkStatus();
}

template <typename M>
StatusOr<std::unique_ptr<google::protobuf::MessageLite>> ParseAs(
    std::string_view body, const MessageLimits& limits,
    Status (*validate)(const M&, const MessageLimits&)) {
  auto m = std::make_unique<M>();
  TW_RETURN_IF_ERROR(ParseBody(body, m.get()));
  if (validate != nullptr) TW_RETURN_IF_ERROR(validate(*m, limits));
  return std::unique_ptr<google::protobuf::MessageLite>(std::move(m));
}

Status ValidateExistsLike(const pb::ExistsRequest& m, const MessageLimits& limits) {
  return ValidateKeyRefs(m.items(), limits);
}
Status ValidateDeleteLike(const pb::DeleteRequest& m, const MessageLimits& limits) {
  return ValidateKeyRefs(m.items(), limits);
}
Status ValidateExportLike(const pb::ExportRequest& m, const MessageLimits&) {
  return ValidateExport(m);
}
Status ValidateEvictLike(const pb::EvictNamespaceRequest& m, const MessageLimits&) {
  return ValidateEvict(m);
}

}  // namespace

Status ParseBody(std::string_view body, google::protobuf::MessageLite* message) {
  if (!message->ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return InvalidArgumentError(
        StrCat("malformed ", message->GetTypeName(), " body (", body.size(), " bytes)"));
  }
  return OkStatus();
}

Status ValidateHello(const pb::HelloRequest& m, const MessageLimits& limits) {
  if (m.min_version() == 0 || m.min_version() > m.max_version()) {
    return InvalidArgumentError(
        StrCat("hello: bad version range [", m.min_version(), ", ", m.max_version(), "]"));
  }
  if (m.client_name().size() > 256) return InvalidArgumentError("hello: client_name too long");
  if (static_cast<uint64_t>(m.namespaces_size()) > limits.max_namespaces) {
    return ResourceExhaustedError(StrCat(
        "hello: ", m.namespaces_size(), " namespaces exceed the limit of ", limits.max_namespaces));
  }
  for (int i = 0; i < m.namespaces_size(); ++i) {
    TW_RETURN_IF_ERROR(CheckNamespace(m.namespaces(i), StrCat("hello.namespaces[", i, "]")));
  }
  return OkStatus();
}

Status ValidateDeclare(const pb::DeclareNamespacesRequest& m, const MessageLimits& limits) {
  if (static_cast<uint64_t>(m.namespaces_size()) > limits.max_namespaces) {
    return ResourceExhaustedError("declare_namespaces: too many namespaces");
  }
  for (int i = 0; i < m.namespaces_size(); ++i) {
    TW_RETURN_IF_ERROR(CheckNamespace(m.namespaces(i), StrCat("namespaces[", i, "]")));
  }
  return OkStatus();
}

Status ValidateLookup(const pb::LookupRequest& m, const MessageLimits& limits) {
  TW_RETURN_IF_ERROR(CheckBatch(m.items_size(), limits, "lookup"));
  uint64_t total_keys = 0;
  for (int i = 0; i < m.items_size(); ++i) {
    const pb::LookupItem& item = m.items(i);
    if (item.chains_size() == 0) {
      return InvalidArgumentError(StrCat("lookup.items[", i, "]: no chains"));
    }
    if (item.chains_size() > 1024) {
      return InvalidArgumentError(StrCat("lookup.items[", i, "]: more than 1024 chains"));
    }
    for (int c = 0; c < item.chains_size(); ++c) {
      const pb::KeyChain& chain = item.chains(c);
      // The error text is built only on the error path: this runs once per key of every
      // lookup, on twd's reactor.
      auto where = [&] { return StrCat("lookup.items[", i, "].chains[", c, "]"); };
      if (chain.namespace_digest().size() != kKeySize) {
        return CheckKey(chain.namespace_digest(), StrCat(where(), ".namespace_digest"));
      }
      const std::string& packed = chain.packed_keys();
      const int forms = (chain.keys_size() != 0) + !packed.empty() + (chain.keys_count() != 0);
      if (forms > 1) {
        return InvalidArgumentError(
            StrCat(where(), ": keys given in more than one of keys, packed_keys, keys_count"));
      }
      if (packed.size() % kKeySize != 0) {
        return InvalidArgumentError(StrCat(where(), ".packed_keys: ", packed.size(),
                                           " bytes is not a multiple of ", kKeySize));
      }
      if (chain.keys_count() == 0 && chain.keys_arena_offset() != 0) {
        return InvalidArgumentError(StrCat(where(), ": keys_arena_offset without keys_count"));
      }
      const uint64_t n = ChainLength(chain);
      if (n > limits.max_chain) {
        return ResourceExhaustedError(StrCat(where(), ": chain longer than ", limits.max_chain));
      }
      if (chain.keys_count() != 0) {
        TW_RETURN_IF_ERROR(CheckInArena(chain.keys_arena_offset(), n * kKeySize, limits,
                                        StrCat(where(), ".keys_arena_offset")));
      }
      for (int k = 0; k < chain.keys_size(); ++k) {
        if (chain.keys(k).size() != kKeySize) {
          return CheckKey(chain.keys(k), StrCat(where(), ".keys[", k, "]"));
        }
      }
      total_keys += n;
    }
  }
  if (total_keys > uint64_t{limits.max_chain} * 16) {
    return ResourceExhaustedError("lookup: too many keys in one request");
  }
  return OkStatus();
}

Status ValidateReleaseLeases(const pb::ReleaseLeasesRequest& m, const MessageLimits& limits) {
  return CheckBatch(m.leases_size(), limits, "release_leases");
}

Status ValidateKeyRefs(const google::protobuf::RepeatedPtrField<pb::KeyRef>& refs,
                       const MessageLimits& limits) {
  TW_RETURN_IF_ERROR(CheckBatch(refs.size(), limits, "keys"));
  for (int i = 0; i < refs.size(); ++i) {
    TW_RETURN_IF_ERROR(CheckKeyRef(refs[i], StrCat("items[", i, "]")));
  }
  return OkStatus();
}

Status ValidateGet(const pb::GetRequest& m, const MessageLimits& limits) {
  TW_RETURN_IF_ERROR(CheckBatch(m.items_size(), limits, "get"));
  std::vector<Span> spans;
  for (int i = 0; i < m.items_size(); ++i) {
    const pb::GetItem& item = m.items(i);
    const std::string where = StrCat("get.items[", i, "]");
    TW_RETURN_IF_ERROR(CheckKeyRef(item.ref(), where));
    if (item.ranges_size() == 0) {
      TW_RETURN_IF_ERROR(CheckInArena(item.arena_offset(), item.arena_length(), limits,
                                      StrCat(where, " (whole value)")));
      spans.push_back({item.arena_offset(), item.arena_length()});
    } else {
      if (item.arena_length() != 0) {
        return InvalidArgumentError(StrCat(where, ": both ranges and arena_length given"));
      }
      TW_RETURN_IF_ERROR(CheckScatter(item.ranges(), limits, where, &spans));
    }
    if (spans.size() > limits.max_ranges) {
      return ResourceExhaustedError(StrCat("get: more than ", limits.max_ranges, " ranges"));
    }
  }
  // Two destinations that overlap would let one chunk's bytes land on another's.
  return CheckNoOverlap(spans, "get");
}

Status ValidatePut(const pb::PutRequest& m, const MessageLimits& limits) {
  TW_RETURN_IF_ERROR(CheckBatch(m.items_size(), limits, "put"));
  std::vector<Span> spans;
  for (int i = 0; i < m.items_size(); ++i) {
    const pb::PutItem& item = m.items(i);
    const std::string where = StrCat("put.items[", i, "]");
    TW_RETURN_IF_ERROR(CheckKeyRef(item.ref(), where));
    TW_RETURN_IF_ERROR(CheckKey(item.parent(), StrCat(where, ".parent")));
    if (item.extra().size() > limits.max_extra) {
      return InvalidArgumentError(StrCat(where, ": extra bytes exceed ", limits.max_extra));
    }
    if (item.tokens_size() == 0 || static_cast<uint64_t>(item.tokens_size()) > limits.max_tokens) {
      return InvalidArgumentError(StrCat(where, ": ", item.tokens_size(), " token ids"));
    }
    if (item.segment_sizes_size() == 0 ||
        static_cast<uint64_t>(item.segment_sizes_size()) > limits.max_segments) {
      return InvalidArgumentError(StrCat(where, ": ", item.segment_sizes_size(), " segments"));
    }
    if (item.durability() != pb::DURABILITY_DEFAULT && item.durability() != pb::DURABILITY_MEMORY &&
        item.durability() != pb::DURABILITY_DISK) {
      return InvalidArgumentError(
          StrCat(where, ": unknown durability ", static_cast<int>(item.durability())));
    }
    uint64_t total = 0;
    for (uint64_t s : item.segment_sizes()) {
      if (s > limits.max_value_size - total) {
        return ResourceExhaustedError(
            StrCat(where, ": value exceeds max_value_size ", limits.max_value_size));
      }
      total += s;
    }
    if (total == 0) return InvalidArgumentError(StrCat(where, ": empty value"));
    TW_RETURN_IF_ERROR(CheckScatter(item.ranges(), limits, where, &spans));
    if (spans.size() > limits.max_ranges) {
      return ResourceExhaustedError(StrCat("put: more than ", limits.max_ranges, " ranges"));
    }
    // Every byte of every segment exactly once: sort by (segment, offset) and walk.
    std::vector<const pb::ScatterEntry*> entries;
    entries.reserve(item.ranges_size());
    for (const auto& e : item.ranges()) entries.push_back(&e);
    std::sort(entries.begin(), entries.end(),
              [](const pb::ScatterEntry* a, const pb::ScatterEntry* b) {
                return a->segment() != b->segment() ? a->segment() < b->segment()
                                                    : a->offset() < b->offset();
              });
    size_t e = 0;
    for (int s = 0; s < item.segment_sizes_size(); ++s) {
      uint64_t next = 0;
      while (e < entries.size() && entries[e]->segment() == static_cast<uint32_t>(s)) {
        if (entries[e]->offset() != next) {
          return InvalidArgumentError(
              StrCat(where, ": segment ", s, " ranges ",
                     entries[e]->offset() < next ? "overlap" : "leave a gap", " at offset ",
                     std::min(next, entries[e]->offset())));
        }
        next += entries[e]->length();
        ++e;
      }
      if (next != item.segment_sizes(s)) {
        return InvalidArgumentError(StrCat(where, ": segment ", s, " covered up to ", next, " of ",
                                           item.segment_sizes(s), " bytes"));
      }
    }
    if (e != entries.size()) {
      return InvalidArgumentError(StrCat(where, ": range names segment ", entries[e]->segment(),
                                         " of a value with ", item.segment_sizes_size(),
                                         " segments"));
    }
  }
  return CheckNoOverlap(spans, "put");
}

Status ValidateExport(const pb::ExportRequest& m) {
  if (!m.namespace_digest().empty()) {
    TW_RETURN_IF_ERROR(CheckKey(m.namespace_digest(), "export.namespace_digest"));
  }
  if (!m.key().empty()) return CheckKey(m.key(), "export.key");
  return OkStatus();
}

Status ValidateEvict(const pb::EvictNamespaceRequest& m) {
  return CheckKey(m.namespace_digest(), "evict.namespace_digest");
}

StatusOr<std::unique_ptr<google::protobuf::MessageLite>> ParseRequest(Opcode op,
                                                                      std::string_view body,
                                                                      const MessageLimits& limits) {
  switch (op) {
    case Opcode::kHello:
      return ParseAs<pb::HelloRequest>(body, limits, &ValidateHello);
    case Opcode::kDeclareNamespaces:
      return ParseAs<pb::DeclareNamespacesRequest>(body, limits, &ValidateDeclare);
    case Opcode::kLookup:
      return ParseAs<pb::LookupRequest>(body, limits, &ValidateLookup);
    case Opcode::kReleaseLeases:
      return ParseAs<pb::ReleaseLeasesRequest>(body, limits, &ValidateReleaseLeases);
    case Opcode::kGet:
      return ParseAs<pb::GetRequest>(body, limits, &ValidateGet);
    case Opcode::kPut:
      return ParseAs<pb::PutRequest>(body, limits, &ValidatePut);
    case Opcode::kExists:
      return ParseAs<pb::ExistsRequest>(body, limits, &ValidateExistsLike);
    case Opcode::kDelete:
      return ParseAs<pb::DeleteRequest>(body, limits, &ValidateDeleteLike);
    case Opcode::kStats:
      return ParseAs<pb::StatsRequest>(body, limits, nullptr);
    case Opcode::kPing:
      return ParseAs<pb::PingRequest>(body, limits, nullptr);
    case Opcode::kAdminNamespaces:
      return ParseAs<pb::NamespacesRequest>(body, limits, nullptr);
    case Opcode::kAdminEvictNamespace:
      return ParseAs<pb::EvictNamespaceRequest>(body, limits, &ValidateEvictLike);
    case Opcode::kAdminExport:
      return ParseAs<pb::ExportRequest>(body, limits, &ValidateExportLike);
    case Opcode::kAdminStats:
      return ParseAs<pb::AdminStatsRequest>(body, limits, nullptr);
    case Opcode::kAdminPeers:
      return ParseAs<pb::AdminPeersRequest>(body, limits, nullptr);
    case Opcode::kInvalid:
      break;
  }
  return UnimplementedError(StrCat("unknown opcode ", static_cast<uint16_t>(op)));
}

std::string FrameMessage(const google::protobuf::MessageLite& m) {
  const size_t n = m.ByteSizeLong();
  std::string frame(kHeaderSize + n, '\0');
  m.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(frame.data() + kHeaderSize));
  return frame;
}

void SetFrameHeader(FrameHeader h, std::string* frame) {
  h.body_length = static_cast<uint32_t>(frame->size() - kHeaderSize);
  EncodeHeader(h, reinterpret_cast<uint8_t*>(frame->data()));
}

std::string EncodeReply(Opcode op, uint64_t request_id, const google::protobuf::MessageLite& m,
                        uint32_t extra_flags) {
  FrameHeader h;
  h.opcode = op;
  h.flags = kFlagResponse | extra_flags;
  h.request_id = request_id;
  std::string frame = FrameMessage(m);
  SetFrameHeader(h, &frame);
  return frame;
}

std::string EncodeRequest(Opcode op, uint64_t request_id, const google::protobuf::MessageLite& m) {
  FrameHeader h;
  h.opcode = op;
  h.request_id = request_id;
  std::string frame = FrameMessage(m);
  SetFrameHeader(h, &frame);
  return frame;
}

std::string EncodeError(Opcode op, uint64_t request_id, const Status& status, bool fatal) {
  pb::ErrorReply reply;
  reply.set_code(static_cast<int32_t>(status.code()));
  reply.set_message(std::string(status.message()));
  reply.set_fatal(fatal);
  return EncodeReply(IsKnownOpcode(static_cast<uint16_t>(op)) ? op : Opcode::kInvalid, request_id,
                     reply, kFlagError);
}

Status ErrorReplyToStatus(const pb::ErrorReply& reply) {
  StatusCode code = static_cast<StatusCode>(reply.code());
  if (code == StatusCode::kOk) code = StatusCode::kInternal;
  return Status(code, reply.message());
}

pb::Namespace ToProto(const Namespace& ns) {
  pb::Namespace p;
  p.set_model(ns.model);
  p.set_model_revision(ns.model_revision);
  p.set_tokenizer(ns.tokenizer);
  p.set_kv_dtype(ns.kv_dtype);
  p.set_kv_layout(ns.kv_layout);
  p.set_parallel(ns.parallel);
  p.set_adapter(ns.adapter);
  p.set_tenant(ns.tenant);
  p.set_chunk_tokens(ns.chunk_tokens);
  return p;
}

Namespace FromProto(const pb::Namespace& p) {
  Namespace ns;
  ns.model = p.model();
  ns.model_revision = p.model_revision();
  ns.tokenizer = p.tokenizer();
  ns.kv_dtype = p.kv_dtype();
  ns.kv_layout = p.kv_layout();
  ns.parallel = p.parallel();
  ns.adapter = p.adapter();
  ns.tenant = p.tenant();
  ns.chunk_tokens = p.chunk_tokens();
  return ns;
}

Key KeyFromBytes(const std::string& raw) {
  Key k;
  std::memcpy(k.bytes.data(), raw.data(), std::min(raw.size(), k.bytes.size()));
  return k;
}

size_t ChainLength(const pb::KeyChain& chain) {
  if (chain.keys_count() != 0) return chain.keys_count();
  return chain.packed_keys().empty() ? static_cast<size_t>(chain.keys_size())
                                     : chain.packed_keys().size() / kKeySize;
}

namespace {
// Key is 32 unsigned bytes with no padding and alignment 1: 32·n bytes are an array of n Keys
// as they stand.
static_assert(sizeof(Key) == kKeySize && alignof(Key) == 1 && std::is_trivially_copyable_v<Key> &&
              std::is_standard_layout_v<Key>);
std::span<const Key> KeysAt(const void* p, size_t n) { return {static_cast<const Key*>(p), n}; }
}  // namespace

std::span<const Key> ChainKeysView(const pb::KeyChain& chain, std::span<const uint8_t> arena,
                                   ArenaKeys arena_keys, std::vector<Key>* scratch) {
  if (chain.keys_count() != 0) {
    // Validated: the range lies in the arena.
    const uint8_t* at = arena.data() + chain.keys_arena_offset();
    if (arena_keys == ArenaKeys::kInPlace) return KeysAt(at, chain.keys_count());
    scratch->resize(chain.keys_count());
    std::memcpy(scratch->data(), at, scratch->size() * kKeySize);
    return *scratch;
  }
  const std::string& packed = chain.packed_keys();
  if (!packed.empty()) return KeysAt(packed.data(), packed.size() / kKeySize);
  // One field per key (version 1): the only form copied whatever `arena_keys` says.
  scratch->clear();
  scratch->reserve(chain.keys_size());
  for (const std::string& k : chain.keys()) scratch->push_back(KeyFromBytes(k));
  return *scratch;
}

void SetChainKeys(std::span<const Key> keys, bool packed, pb::KeyChain* chain) {
  chain->clear_keys();
  chain->clear_packed_keys();
  if (packed) {
    chain->mutable_packed_keys()->assign(reinterpret_cast<const char*>(keys.data()),
                                         keys.size() * kKeySize);
    return;
  }
  chain->mutable_keys()->Reserve(static_cast<int>(keys.size()));
  for (const Key& k : keys) chain->add_keys()->assign(k.View());
}

}  // namespace tw::protocol
