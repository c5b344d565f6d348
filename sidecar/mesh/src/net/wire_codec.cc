#include "wire_codec.h"

#include <cstring>

#include "fetch_wire.h"
#include "tw/common/strings.h"

namespace tw::mesh::net {

namespace {

void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{p[i]} << (8 * i);
  return v;
}
void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}
const uint8_t* U8(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }

}  // namespace

std::array<uint8_t, kWireHeaderSize> EncodeWireHeader(WireType type, uint32_t body) {
  std::array<uint8_t, kWireHeaderSize> h{};
  h[0] = static_cast<uint8_t>(type);
  h[1] = kWireVersion;
  PutU32(h.data() + 4, body);
  return h;
}

StatusOr<WireHeader> DecodeWireHeader(std::span<const uint8_t, kWireHeaderSize> bytes) {
  if (bytes[1] != kWireVersion) {
    return InvalidArgumentError(
        StrCat("mesh wire: version ", int{bytes[1]}, ", not ", int{kWireVersion}));
  }
  if (bytes[0] < static_cast<uint8_t>(WireType::kLocate) ||
      bytes[0] > static_cast<uint8_t>(WireType::kError) || bytes[2] != 0 || bytes[3] != 0) {
    return InvalidArgumentError(StrCat("mesh wire: unknown frame type ", int{bytes[0]}));
  }
  WireHeader h;
  h.type = static_cast<WireType>(bytes[0]);
  h.body = GetU32(bytes.data() + 4);
  if (h.body > kMaxWireBody) {
    return InvalidArgumentError(StrCat("mesh wire: a frame body of ", h.body, " bytes"));
  }
  return h;
}

std::string EncodeLocate(std::span<const Key> dir_keys) {
  std::string out(32 * dir_keys.size(), '\0');
  for (size_t i = 0; i < dir_keys.size(); ++i) {
    std::memcpy(out.data() + 32 * i, dir_keys[i].bytes.data(), 32);
  }
  return out;
}

StatusOr<std::vector<Key>> DecodeLocate(std::string_view body) {
  if (body.size() % 32 != 0) {
    return InvalidArgumentError("mesh wire: locate: not a whole number of 32-byte keys");
  }
  if (body.size() / 32 > kMaxLocateKeys) {
    return InvalidArgumentError(StrCat("mesh wire: locate: more than ", kMaxLocateKeys, " keys"));
  }
  std::vector<Key> keys(body.size() / 32);
  for (size_t i = 0; i < keys.size(); ++i) {
    std::memcpy(keys[i].bytes.data(), body.data() + 32 * i, 32);
  }
  return keys;
}

std::string EncodeLocateAnswer(std::span<const std::string> names,
                               std::span<const uint32_t> offsets,
                               std::span<const uint32_t> holders) {
  std::string out;
  size_t name_bytes = 0;
  for (const std::string& n : names) name_bytes += n.size() + 2;
  out.reserve(2 + name_bytes + offsets.size() + 2 * holders.size());
  AppendVarint(&out, names.size());
  for (const std::string& n : names) {
    AppendVarint(&out, n.size());
    out.append(n);
  }
  for (size_t i = 0; i + 1 < offsets.size(); ++i) {
    AppendVarint(&out, offsets[i + 1] - offsets[i]);
    for (uint32_t j = offsets[i]; j < offsets[i + 1]; ++j) AppendVarint(&out, holders[j]);
  }
  return out;
}

StatusOr<LocateAnswer> DecodeLocateAnswer(std::string_view in, size_t keys) {
  uint64_t count = 0;
  if (!ReadVarint(&in, &count) || count > in.size()) {
    return InvalidArgumentError("mesh wire: locate answer: bad count of names");
  }
  LocateAnswer out;
  out.names.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t len = 0;
    if (!ReadVarint(&in, &len) || len > in.size()) {
      return InvalidArgumentError("mesh wire: locate answer: a name runs past the frame");
    }
    out.names.emplace_back(in.substr(0, len));
    in.remove_prefix(len);
  }
  TW_RETURN_IF_ERROR(DecodePackedHolders(in, keys, out.names.size(), &out.offsets, &out.index));
  return out;
}

Status DecodePackedHolders(std::string_view in, size_t keys, size_t names,
                           std::vector<uint32_t>* offsets, std::vector<uint32_t>* index) {
  offsets->reserve(offsets->size() + keys);
  index->reserve(index->size() + keys);
  for (size_t k = 0; k < keys; ++k) {
    uint64_t n = 0;
    if (!ReadVarint(&in, &n) || n > in.size()) {
      return InvalidArgumentError(StrCat("locate answer ends before key ", k, " of ", keys));
    }
    for (uint64_t j = 0; j < n; ++j) {
      uint64_t idx = 0;
      if (!ReadVarint(&in, &idx) || idx >= names) {
        return InvalidArgumentError(StrCat("locate answer: bad holder index at key ", k));
      }
      index->push_back(static_cast<uint32_t>(idx));
    }
    offsets->push_back(static_cast<uint32_t>(index->size()));
  }
  if (!in.empty()) return InvalidArgumentError(StrCat("locate answer: more than ", keys, " keys"));
  return OkStatus();
}

std::string EncodeFetch(const WireFetchRequest& f) {
  std::string out(72 + f.from_node.size(), '\0');
  auto* p = reinterpret_cast<uint8_t*>(out.data());
  std::memcpy(p, f.namespace_digest.bytes.data(), 32);
  std::memcpy(p + 32, f.key.bytes.data(), 32);
  PutU64(p + 64, f.budget_ns);
  std::memcpy(p + 72, f.from_node.data(), f.from_node.size());
  return out;
}

StatusOr<WireFetchRequest> DecodeFetch(std::string_view body) {
  if (body.size() < 72) return InvalidArgumentError("mesh wire: fetch: request too short");
  WireFetchRequest f;
  std::memcpy(f.namespace_digest.bytes.data(), body.data(), 32);
  std::memcpy(f.key.bytes.data(), body.data() + 32, 32);
  f.budget_ns = GetU64(U8(body) + 64);
  f.from_node.assign(body.substr(72));
  return f;
}

std::string EncodeError(const Status& status) {
  std::string out(4, '\0');
  PutU32(reinterpret_cast<uint8_t*>(out.data()), static_cast<uint32_t>(status.code()));
  out.append(status.message());
  return out;
}

Status DecodeError(std::string_view body) {
  if (body.size() < 4) return InternalError("mesh wire: a malformed error frame");
  const uint32_t code = GetU32(U8(body));
  if (code == 0 || code > static_cast<uint32_t>(StatusCode::kDataLoss)) {
    return InternalError(StrCat("mesh wire: error frame with code ", code, ": ", body.substr(4)));
  }
  return Status(static_cast<StatusCode>(code), std::string(body.substr(4)));
}

}  // namespace tw::mesh::net
