// The C ABI's connection and operations (tw_client.h, "Connection" and "Operations"), a thin
// layer over tw::client::Client: it copies C inputs into C++ requests, and copies answers
// back into the caller's structures on the thread that waits.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <type_traits>

#include "c_api_internal.h"
#include "tw/client/client.h"
#include "tw/common/strings.h"

// A pending asynchronous call: waits on the C++ future, then copies the answer out.
struct tw_future {
  virtual ~tw_future() = default;
  // Whether the answer is there, waiting up to `timeout`.
  virtual bool WaitFor(std::chrono::milliseconds timeout) = 0;
  // REQUIRES: WaitFor returned true. Copies the answer; returns the call's code. Once only.
  virtual int Finish() = 0;
  bool finished = false;
  int code = TW_OK;
  std::string message;
};

namespace tw::client::capi {
namespace {

using std::chrono::milliseconds;

template <typename T, typename Copy>
struct FutureImpl final : tw_future {
  FutureImpl(Future<T> f, Copy c) : future(std::move(f)), copy(std::move(c)) {}
  bool WaitFor(milliseconds timeout) override {
    return future.wait_for(timeout) == std::future_status::ready;
  }
  int Finish() override {
    StatusOr<T> r = future.get();
    if (!r.ok()) return Fail(r.status());
    return copy(*r);
  }
  Future<T> future;
  Copy copy;
};

template <typename T, typename Copy>
tw_future* MakeFuture(Future<T> f, Copy c) {
  return new FutureImpl<T, Copy>(std::move(f), std::move(c));
}

// The answer of a synchronous call, already there, behind the same interface.
template <typename T, typename Copy>
struct AnswerImpl final : tw_future {
  AnswerImpl(StatusOr<T> a, Copy c) : answer(std::move(a)), copy(std::move(c)) {}
  bool WaitFor(milliseconds) override { return true; }
  int Finish() override { return answer.ok() ? copy(*answer) : Fail(answer.status()); }
  StatusOr<T> answer;
  Copy copy;
};

// How a Start* function runs its request: kAsync returns at once with a future; kSync waits
// for the answer in the client's synchronous call, on this thread (which reads the reply
// itself on an idle connection: one send and one receive, no other thread woken).
enum class Mode { kAsync, kSync };

// Sends with `async` (returns a Future<T>) or runs `sync` (returns StatusOr<T>) per `mode`;
// `copy` takes the answer back into C structures.
template <typename Async, typename Sync, typename Copy>
tw_future* Launch(Mode mode, Async async, Sync sync, Copy copy) {
  if (mode == Mode::kSync) {
    auto answer = sync();
    return new AnswerImpl<std::remove_cvref_t<decltype(*answer)>, Copy>(std::move(answer),
                                                                        std::move(copy));
  }
  return MakeFuture(async(), std::move(copy));
}

milliseconds Timeout(tw_client* c, uint32_t timeout_ms) {
  return timeout_ms == 0 ? c->impl->default_timeout() : milliseconds(timeout_ms);
}

Key KeyAt(const uint8_t* p) {
  Key k;
  std::memcpy(k.bytes.data(), p, TW_KEY_SIZE);
  return k;
}

// C numbering of the enums equals the C++ one.
int32_t C(Tier t) { return static_cast<int32_t>(t); }
int32_t C(MissReason r) { return static_cast<int32_t>(r); }
int32_t C(PutResult r) { return static_cast<int32_t>(r); }

std::vector<ScatterRange> Ranges(const tw_scatter* s, size_t n) {
  std::vector<ScatterRange> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i] = ScatterRange{s[i].segment, s[i].offset, s[i].length, s[i].arena_offset};
  }
  return out;
}

StatusOr<tw_future*> StartLookup(tw_client* c, const uint8_t* digests, const uint8_t* keys,
                                 size_t chain_length, size_t n_chains, uint32_t flags,
                                 uint32_t timeout_ms, tw_lookup_result* result, Mode mode) {
  if (c == nullptr || result == nullptr || n_chains == 0 || digests == nullptr ||
      (keys == nullptr && chain_length != 0)) {
    return InvalidArgumentError("lookup: NULL argument or no chain");
  }
  std::vector<std::vector<LookupChain>> items(1);
  for (size_t r = 0; r < n_chains; ++r) {
    LookupChain chain;
    chain.namespace_digest = KeyAt(digests + r * TW_KEY_SIZE);
    for (size_t j = 0; j < chain_length; ++j) {
      chain.keys.push_back(KeyAt(keys + (r * chain_length + j) * TW_KEY_SIZE));
    }
    items[0].push_back(std::move(chain));
  }
  const bool lease = (flags & TW_LOOKUP_LEASE) != 0;
  const milliseconds timeout = Timeout(c, timeout_ms);
  return Launch(
      mode, [&] { return c->impl->LookupAsync(items, lease, timeout); },
      [&] { return c->impl->Lookup(items, lease, timeout); },
      [result, chain_length](const std::vector<LookupReply>& r) {
        const LookupReply& l = r[0];
        result->prefix = l.prefix;
        result->miss = C(l.miss);
        result->lease = l.lease;
        if (result->tiers != nullptr) {
          for (size_t j = 0; j < chain_length; ++j) {
            bool known = !l.tiers.empty() && j < l.tiers[0].size() && j < l.prefix;
            result->tiers[j] = static_cast<uint8_t>(known ? C(l.tiers[0][j]) : TW_TIER_NONE);
          }
        }
        return TW_OK;
      });
}

StatusOr<tw_future*> StartGet(tw_client* c, tw_get_item* items, size_t n, uint64_t lease,
                              uint32_t timeout_ms, Mode mode) {
  if (c == nullptr || (items == nullptr && n != 0))
    return InvalidArgumentError("get: NULL argument");
  std::vector<GetItem> req(n);
  for (size_t i = 0; i < n; ++i) {
    const tw_get_item& it = items[i];
    if (it.key == nullptr || it.namespace_digest == nullptr ||
        (it.scatter == nullptr && it.n_scatter != 0)) {
      return InvalidArgumentError(StrCat("get: items[", i, "] has a NULL key, digest or scatter"));
    }
    req[i].ref = KeyRef{KeyAt(it.key), KeyAt(it.namespace_digest)};
    req[i].ranges = Ranges(it.scatter, it.n_scatter);
    req[i].arena_offset = it.arena_offset;
    req[i].arena_length = it.arena_length;
    req[i].lease = lease;
  }
  const milliseconds timeout = Timeout(c, timeout_ms);
  return Launch(
      mode, [&] { return c->impl->GetAsync(req, timeout); },
      [&] { return c->impl->Get(req, timeout); },
      [items](const std::vector<GetReply>& r) {
        for (size_t i = 0; i < r.size(); ++i) {
          items[i].tier = C(r[i].tier);
          items[i].miss = C(r[i].miss);
          items[i].bytes = r[i].bytes;
        }
        return TW_OK;
      });
}

StatusOr<tw_future*> StartPut(tw_client* c, tw_put_item* items, size_t n, int durability,
                              uint32_t timeout_ms, Mode mode) {
  if (c == nullptr || (items == nullptr && n != 0))
    return InvalidArgumentError("put: NULL argument");
  if (durability != TW_DURABILITY_MEMORY && durability != TW_DURABILITY_DISK) {
    return InvalidArgumentError(StrCat("put: durability ", durability, " is not memory or disk"));
  }
  std::vector<PutItem> req(n);
  for (size_t i = 0; i < n; ++i) {
    const tw_put_item& it = items[i];
    if (it.key == nullptr || it.parent == nullptr || it.namespace_digest == nullptr ||
        (it.extra == nullptr && it.extra_size != 0) || (it.tokens == nullptr && it.n_tokens != 0) ||
        (it.segment_sizes == nullptr && it.n_segments != 0) ||
        (it.scatter == nullptr && it.n_scatter != 0)) {
      return InvalidArgumentError(StrCat("put: items[", i, "] has a NULL pointer with a size"));
    }
    PutItem& p = req[i];
    p.ref = KeyRef{KeyAt(it.key), KeyAt(it.namespace_digest)};
    p.parent = KeyAt(it.parent);
    if (it.extra_size != 0) p.extra.assign(reinterpret_cast<const char*>(it.extra), it.extra_size);
    p.tokens.assign(it.tokens, it.tokens + it.n_tokens);
    p.ranges = Ranges(it.scatter, it.n_scatter);
    if (it.n_segments != 0) {
      p.segment_sizes.assign(it.segment_sizes, it.segment_sizes + it.n_segments);
    } else {
      uint64_t total = 0;
      for (const ScatterRange& r : p.ranges) total += r.length;
      p.segment_sizes.push_back(total);
    }
    p.durability = durability == TW_DURABILITY_DISK ? Durability::kDisk : Durability::kMemory;
  }
  const milliseconds timeout = Timeout(c, timeout_ms);
  return Launch(
      mode, [&] { return c->impl->PutAsync(req, timeout); },
      [&] { return c->impl->Put(req, timeout); },
      [items](const std::vector<PutReply>& r) {
        for (size_t i = 0; i < r.size(); ++i) items[i].result = C(r[i].result);
        return TW_OK;
      });
}

std::vector<KeyRef> Refs(const uint8_t* digest, const uint8_t* keys, size_t n) {
  std::vector<KeyRef> refs(n);
  Key ns = KeyAt(digest);
  for (size_t i = 0; i < n; ++i) refs[i] = KeyRef{KeyAt(keys + i * TW_KEY_SIZE), ns};
  return refs;
}

int Started(StatusOr<tw_future*> f, tw_future** out) {
  if (!f.ok()) return Fail(f.status());
  *out = *f;
  return TW_OK;
}

// Copies out the answer of a request started with Mode::kSync (already there).
int RunSync(StatusOr<tw_future*> f) {
  if (!f.ok()) return Fail(f.status());
  std::unique_ptr<tw_future> owned(*f);
  return owned->Finish();
}

}  // namespace
}  // namespace tw::client::capi

using namespace tw::client::capi;  // NOLINT: the C entry points below are thin wrappers
using tw::client::Client;
using tw::client::ClientOptions;

extern "C" {

int tw_client_connect(const tw_client_options* o, tw_client** out) try {
  if (o == nullptr || out == nullptr) return FailInvalid("connect: NULL argument");
  if (o->socket_path == nullptr) return FailInvalid("connect: socket_path is NULL");
  if (o->namespaces == nullptr && o->n_namespaces != 0) {
    return FailInvalid("connect: namespaces is NULL");
  }
  ClientOptions opts;
  opts.socket_path = o->socket_path;
  opts.arena_size = o->arena_size;
  for (size_t i = 0; i < o->n_namespaces; ++i) opts.namespaces.push_back(FromC(o->namespaces[i]));
  if (o->timeout_ms != 0) opts.timeout = std::chrono::milliseconds(o->timeout_ms);
  if (o->max_in_flight != 0) opts.max_in_flight = o->max_in_flight;
  if (o->client_name != nullptr) opts.client_name = o->client_name;
  auto c = Client::Connect(std::move(opts));
  if (!c.ok()) return Fail(c.status());
  *out = new tw_client{std::move(*c), nullptr};
  return TW_OK;
}
TW_C_CATCH("tw_client_connect")

void tw_client_close(tw_client* client) try { delete client; }
TW_C_CATCH_VOID("tw_client_close")

uint8_t* tw_client_arena(tw_client* client, uint64_t* size) try {
  if (client == nullptr) return nullptr;
  if (size != nullptr) *size = client->impl->arena_size();
  return client->impl->arena_data();
}
TW_C_CATCH_RETURN("tw_client_arena", nullptr)

int tw_client_namespace_digest(tw_client* client, size_t index, uint8_t out[TW_KEY_SIZE]) try {
  if (client == nullptr || out == nullptr) return FailInvalid("namespace digest: NULL argument");
  const auto& d = client->impl->session().namespace_digests;
  if (index >= d.size()) {
    return FailInvalid(tw::StrCat("namespace digest: index ", index, " but ", d.size(),
                                  " namespaces are declared"));
  }
  std::memcpy(out, d[index].bytes.data(), TW_KEY_SIZE);
  return TW_OK;
}
TW_C_CATCH("tw_client_namespace_digest")

uint32_t tw_client_max_batch(tw_client* client) try {
  return client == nullptr ? 0 : client->impl->session().max_batch;
}
TW_C_CATCH_RETURN("tw_client_max_batch", 0)

int tw_client_lookup(tw_client* c, const uint8_t* digests, const uint8_t* keys, size_t chain_length,
                     size_t n_chains, uint32_t flags, uint32_t timeout_ms,
                     tw_lookup_result* result) try {
  return RunSync(StartLookup(c, digests, keys, chain_length, n_chains, flags, timeout_ms, result,
                             Mode::kSync));
}
TW_C_CATCH("tw_client_lookup")

int tw_client_get(tw_client* c, tw_get_item* items, size_t n, uint64_t lease,
                  uint32_t timeout_ms) try {
  return RunSync(StartGet(c, items, n, lease, timeout_ms, Mode::kSync));
}
TW_C_CATCH("tw_client_get")

int tw_client_put(tw_client* c, tw_put_item* items, size_t n, int durability,
                  uint32_t timeout_ms) try {
  return RunSync(StartPut(c, items, n, durability, timeout_ms, Mode::kSync));
}
TW_C_CATCH("tw_client_put")

int tw_client_lookup_async(tw_client* c, const uint8_t* digests, const uint8_t* keys,
                           size_t chain_length, size_t n_chains, uint32_t flags,
                           uint32_t timeout_ms, tw_lookup_result* result, tw_future** future) try {
  if (future == nullptr) return FailInvalid("lookup: NULL future");
  return Started(StartLookup(c, digests, keys, chain_length, n_chains, flags, timeout_ms, result,
                             Mode::kAsync),
                 future);
}
TW_C_CATCH("tw_client_lookup_async")

int tw_client_get_async(tw_client* c, tw_get_item* items, size_t n, uint64_t lease,
                        uint32_t timeout_ms, tw_future** future) try {
  if (future == nullptr) return FailInvalid("get: NULL future");
  return Started(StartGet(c, items, n, lease, timeout_ms, Mode::kAsync), future);
}
TW_C_CATCH("tw_client_get_async")

int tw_client_put_async(tw_client* c, tw_put_item* items, size_t n, int durability,
                        uint32_t timeout_ms, tw_future** future) try {
  if (future == nullptr) return FailInvalid("put: NULL future");
  return Started(StartPut(c, items, n, durability, timeout_ms, Mode::kAsync), future);
}
TW_C_CATCH("tw_client_put_async")

int tw_client_exists(tw_client* c, const uint8_t* digest, const uint8_t* keys, size_t n,
                     uint8_t* tiers, uint64_t* value_sizes, uint32_t timeout_ms) try {
  if (c == nullptr || digest == nullptr || (n != 0 && (keys == nullptr || tiers == nullptr))) {
    return FailInvalid("exists: NULL argument");
  }
  auto r = c->impl->Exists(Refs(digest, keys, n), Timeout(c, timeout_ms));
  if (!r.ok()) return Fail(r.status());
  for (size_t i = 0; i < n; ++i) {
    tiers[i] = static_cast<uint8_t>((*r)[i].exists ? C((*r)[i].tier) : TW_TIER_NONE);
    if (value_sizes != nullptr) value_sizes[i] = (*r)[i].value_size;
  }
  return TW_OK;
}
TW_C_CATCH("tw_client_exists")

int tw_client_delete(tw_client* c, const uint8_t* digest, const uint8_t* keys, size_t n,
                     uint8_t* deleted, uint32_t timeout_ms) try {
  if (c == nullptr || digest == nullptr || (n != 0 && keys == nullptr)) {
    return FailInvalid("delete: NULL argument");
  }
  auto r = c->impl->Delete(Refs(digest, keys, n), Timeout(c, timeout_ms));
  if (!r.ok()) return Fail(r.status());
  if (deleted != nullptr) {
    for (size_t i = 0; i < n; ++i) deleted[i] = (*r)[i] ? 1 : 0;
  }
  return TW_OK;
}
TW_C_CATCH("tw_client_delete")

int tw_client_release_leases(tw_client* c, const uint64_t* leases, size_t n, uint32_t* released,
                             uint32_t timeout_ms) try {
  if (c == nullptr || (leases == nullptr && n != 0)) return FailInvalid("release: NULL argument");
  auto r = c->impl->ReleaseLeases({leases, leases + n}, Timeout(c, timeout_ms));
  if (!r.ok()) return Fail(r.status());
  if (released != nullptr) *released = *r;
  return TW_OK;
}
TW_C_CATCH("tw_client_release_leases")

int tw_client_ping(tw_client* c, uint32_t timeout_ms) try {
  if (c == nullptr) return FailInvalid("ping: NULL client");
  return Fail(c->impl->Ping(Timeout(c, timeout_ms)));
}
TW_C_CATCH("tw_client_ping")

int tw_client_stats(tw_client* c, char* buf, size_t buf_size, size_t* needed,
                    uint32_t timeout_ms) try {
  if (c == nullptr) return FailInvalid("stats: NULL client");
  auto r = c->impl->GetStats(Timeout(c, timeout_ms));
  if (!r.ok()) return Fail(r.status());
  std::string json = tw::client::StatsToJson(*r);
  if (needed != nullptr) *needed = json.size() + 1;
  if (buf == nullptr || buf_size < json.size() + 1) {
    return Fail(tw::ResourceExhaustedError(
        tw::StrCat("stats: the buffer holds ", buf_size, " bytes, ", json.size() + 1, " needed")));
  }
  std::memcpy(buf, json.c_str(), json.size() + 1);
  return TW_OK;
}
TW_C_CATCH("tw_client_stats")

int tw_future_wait(tw_future* f, uint32_t timeout_ms) try {
  if (f == nullptr) return FailInvalid("future: NULL");
  if (f->finished) {
    if (f->code != TW_OK) Fail(tw::Status(static_cast<tw::StatusCode>(f->code), f->message));
    return f->code;
  }
  auto timeout = timeout_ms == UINT32_MAX ? std::chrono::milliseconds::max()
                                          : std::chrono::milliseconds(timeout_ms);
  bool ready = timeout == std::chrono::milliseconds::max()
                   ? (f->WaitFor(std::chrono::hours(24 * 365)))
                   : f->WaitFor(timeout);
  if (!ready) {
    return Fail(tw::DeadlineExceededError("the future has not completed yet"));
  }
  f->code = f->Finish();
  f->finished = true;
  if (f->code != TW_OK) f->message = LastError();
  return f->code;
}
TW_C_CATCH("tw_future_wait")

int tw_future_ready(tw_future* f) try {
  if (f == nullptr) return 0;
  return f->finished || f->WaitFor(std::chrono::milliseconds(0)) ? 1 : 0;
}
TW_C_CATCH_RETURN("tw_future_ready", 0)

void tw_future_free(tw_future* f) try { delete f; }
TW_C_CATCH_VOID("tw_future_free")

}  // extern "C"
