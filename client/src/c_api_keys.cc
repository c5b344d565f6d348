// The C ABI's error plumbing and key functions (tw_client.h, "Errors" and "Keys").
#include <cstring>
#include <exception>
#include <string>

#include "c_api_internal.h"
#include "tw/common/strings.h"

namespace tw::client::capi {
namespace {

thread_local std::string t_last_error;

}  // namespace

int Fail(const Status& s) {
  if (s.ok()) return TW_OK;
  t_last_error = std::string(s.message());
  return static_cast<int>(s.code());
}

int FailInvalid(std::string message) { return Fail(InvalidArgumentError(std::move(message))); }

const char* LastError() { return t_last_error.c_str(); }

int FailCurrentException(const char* entry) noexcept {
  const char* what = "an exception that is not a std::exception";
  try {
    throw;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  try {
    t_last_error = StrCat(entry, ": ", what);
  } catch (...) {
    t_last_error.clear();  // no memory for the message: the code alone says it
  }
  return TW_E_INTERNAL;
}

Namespace FromC(const tw_namespace& c) {
  const char* const fields[kNamespaceFieldCount] = {c.model,    c.model_revision, c.tokenizer,
                                                    c.kv_dtype, c.kv_layout,      c.parallel,
                                                    c.adapter,  c.tenant,         c.chunk_tokens};
  Namespace ns;
  for (size_t i = 0; i < kNamespaceFieldCount; ++i) {
    if (fields[i] != nullptr) ns.*kNamespaceFields[i] = fields[i];
  }
  return ns;
}

}  // namespace tw::client::capi

using tw::client::capi::Fail;
using tw::client::capi::FailInvalid;
using tw::client::capi::FromC;

extern "C" {

const char* tw_error_name(int code) try {
  switch (code) {
    case TW_OK:
    case TW_E_CANCELLED:
    case TW_E_INVALID_ARGUMENT:
    case TW_E_DEADLINE_EXCEEDED:
    case TW_E_NOT_FOUND:
    case TW_E_ALREADY_EXISTS:
    case TW_E_PERMISSION_DENIED:
    case TW_E_RESOURCE_EXHAUSTED:
    case TW_E_FAILED_PRECONDITION:
    case TW_E_UNIMPLEMENTED:
    case TW_E_INTERNAL:
    case TW_E_UNAVAILABLE:
    case TW_E_DATA_LOSS:
      // tw::ToString returns views of string literals: NUL-terminated.
      return tw::ToString(static_cast<tw::StatusCode>(code)).data();
    default:
      return "UNKNOWN";
  }
}
TW_C_CATCH_RETURN("tw_error_name", "UNKNOWN")

const char* tw_last_error(void) try { return tw::client::capi::LastError(); }
TW_C_CATCH_RETURN("tw_last_error", "")

const char* tw_client_version(void) try { return "0.1.0"; }
TW_C_CATCH_RETURN("tw_client_version", "")
int tw_client_abi_version(void) try { return TW_CLIENT_ABI_VERSION; }
TW_C_CATCH_RETURN("tw_client_abi_version", 0)

int tw_namespace_normalize(const tw_namespace* in, tw_namespace* out, char* buf, size_t buf_size,
                           size_t* needed) try {
  if (in == nullptr || out == nullptr) return FailInvalid("namespace: NULL argument");
  auto canonical = tw::NormalizeNamespace(FromC(*in));
  if (!canonical.ok()) return Fail(canonical.status());
  size_t total = 0;
  for (auto field : tw::kNamespaceFields) total += ((*canonical).*field).size() + 1;
  if (needed != nullptr) *needed = total;
  if (buf == nullptr || buf_size < total) {
    return Fail(tw::ResourceExhaustedError(tw::StrCat("namespace: the output buffer holds ",
                                                      buf_size, " bytes, ", total, " are needed")));
  }
  const char** fields[tw::kNamespaceFieldCount] = {
      &out->model,    &out->model_revision, &out->tokenizer, &out->kv_dtype,    &out->kv_layout,
      &out->parallel, &out->adapter,        &out->tenant,    &out->chunk_tokens};
  char* p = buf;
  for (size_t i = 0; i < tw::kNamespaceFieldCount; ++i) {
    const std::string& f = (*canonical).*tw::kNamespaceFields[i];
    std::memcpy(p, f.data(), f.size());
    p[f.size()] = '\0';
    *fields[i] = p;
    p += f.size() + 1;
  }
  return TW_OK;
}
TW_C_CATCH("tw_namespace_normalize")

int tw_namespace_digest(const tw_namespace* ns, uint32_t flags, uint8_t out[TW_KEY_SIZE]) try {
  if (ns == nullptr || out == nullptr) return FailInvalid("namespace digest: NULL argument");
  tw::Namespace n = FromC(*ns);
  if ((flags & TW_KEYS_AS_GIVEN) == 0) {
    auto canonical = tw::NormalizeNamespace(n);
    if (!canonical.ok()) return Fail(canonical.status());
    n = std::move(*canonical);
  }
  tw::Key k = tw::NamespaceDigest(n);
  std::memcpy(out, k.bytes.data(), TW_KEY_SIZE);
  return TW_OK;
}
TW_C_CATCH("tw_namespace_digest")

int tw_chunk_keys(const tw_namespace* ns, uint32_t flags, const uint32_t* tokens, size_t n_tokens,
                  const tw_bytes* extras, size_t n_extras, uint8_t* out, size_t out_capacity,
                  size_t* n_keys) try {
  if (ns == nullptr || n_keys == nullptr) return FailInvalid("chunk keys: NULL argument");
  if (tokens == nullptr && n_tokens != 0) return FailInvalid("chunk keys: NULL tokens");
  if (extras == nullptr && n_extras != 0) return FailInvalid("chunk keys: NULL extras");
  tw::Namespace n = FromC(*ns);
  if ((flags & TW_KEYS_AS_GIVEN) == 0) {
    auto canonical = tw::NormalizeNamespace(n);
    if (!canonical.ok()) return Fail(canonical.status());
    n = std::move(*canonical);
  }
  std::vector<std::string> ex;
  ex.reserve(n_extras);
  for (size_t i = 0; i < n_extras; ++i) {
    if (extras[i].data == nullptr && extras[i].size != 0) {
      return FailInvalid(tw::StrCat("chunk keys: extras[", i, "] is NULL with a size"));
    }
    ex.emplace_back(reinterpret_cast<const char*>(extras[i].data), extras[i].size);
  }
  auto keys = tw::ChunkKeys(n, {tokens, n_tokens}, ex);
  if (!keys.ok()) return Fail(keys.status());
  *n_keys = keys->size();
  if (keys->size() > out_capacity) {
    return Fail(tw::ResourceExhaustedError(
        tw::StrCat("chunk keys: room for ", out_capacity, " keys, ", keys->size(), " needed")));
  }
  if (!keys->empty() && out == nullptr) return FailInvalid("chunk keys: NULL output");
  for (size_t i = 0; i < keys->size(); ++i) {
    std::memcpy(out + i * TW_KEY_SIZE, (*keys)[i].bytes.data(), TW_KEY_SIZE);
  }
  return TW_OK;
}
TW_C_CATCH("tw_chunk_keys")

int tw_chunk_key(const uint8_t parent[TW_KEY_SIZE], const uint8_t* extra, size_t extra_size,
                 const uint32_t* tokens, size_t n_tokens, uint8_t out[TW_KEY_SIZE]) try {
  if (parent == nullptr || out == nullptr) return FailInvalid("chunk key: NULL argument");
  if ((extra == nullptr && extra_size != 0) || (tokens == nullptr && n_tokens != 0)) {
    return FailInvalid("chunk key: NULL data with a size");
  }
  tw::Key p;
  std::memcpy(p.bytes.data(), parent, TW_KEY_SIZE);
  tw::Key k = tw::ChunkKey(p, {extra, extra_size}, {tokens, n_tokens});
  std::memcpy(out, k.bytes.data(), TW_KEY_SIZE);
  return TW_OK;
}
TW_C_CATCH("tw_chunk_key")

const char* tw_tier_name(int tier) try {
  switch (tier) {
    case TW_TIER_NONE:
      return "none";
    case TW_TIER_DRAM:
      return "dram";
    case TW_TIER_NVME:
      return "nvme";
    case TW_TIER_PEER:
      return "peer";
    default:
      return "unknown";
  }
}
TW_C_CATCH_RETURN("tw_tier_name", "UNKNOWN")

const char* tw_miss_name(int miss) try {
  switch (miss) {
    case TW_MISS_NONE:
      return "none";
    case TW_MISS_ABSENT:
      return "absent";
    case TW_MISS_EVICTED:
      return "evicted";
    case TW_MISS_CORRUPT:
      return "corrupt";
    case TW_MISS_QUOTA:
      return "quota";
    case TW_MISS_DEADLINE:
      return "deadline";
    case TW_MISS_IO_ERROR:
      return "io_error";
    case TW_MISS_PEER_UNREACHABLE:
      return "peer_unreachable";
    default:
      return "unknown";
  }
}
TW_C_CATCH_RETURN("tw_miss_name", "UNKNOWN")

const char* tw_put_result_name(int result) try {
  switch (result) {
    case TW_PUT_STORED:
      return "stored";
    case TW_PUT_EXISTS:
      return "exists";
    case TW_PUT_REJECTED_ADMISSION:
      return "rejected_admission";
    case TW_PUT_QUOTA:
      return "quota";
    case TW_PUT_BUSY:
      return "busy";
    case TW_PUT_IO_ERROR:
      return "io_error";
    case TW_PUT_INVALID:
      return "invalid";
    default:
      return "unknown";
  }
}
TW_C_CATCH_RETURN("tw_put_result_name", "UNKNOWN")

}  // extern "C"
