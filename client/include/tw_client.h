/* tw_client.h — the stable C ABI of libtwclient, Token Warehouse's client library.
 *
 * What it is: everything an inference process needs to use a node's twd, callable from C,
 * Python (ctypes), Rust or Go without a C++ toolchain:
 *   - the key scheme (docs/keys.md): namespace normalisation, namespace digests, chunk keys;
 *   - a connection to twd's Unix socket with a shared-memory arena (memfd) that the caller
 *     reads and writes KV bytes in place: requests name byte ranges of the arena, and KV
 *     bytes never cross the socket;
 *   - batched lookup / get / put / exists / delete / stats, synchronous or asynchronous.
 *
 * Errors: every function that can fail returns an int, TW_OK (0) or a TW_E_* code (the
 * numbering of tw::StatusCode, which is gRPC's). The message of the last failure on the
 * calling thread is tw_last_error(). Per-item outcomes of batched calls (a miss and its
 * reason, a put result) are results, not errors: the call returns TW_OK and fills them in.
 * No C++ exception crosses this interface: one raised inside the library (out of memory, a
 * thread that could not start) fails the call with TW_E_INTERNAL and its message.
 *
 * Threading: the key functions are pure and thread-safe. A tw_client may be used by any
 * number of threads at once: calls are pipelined on one socket and complete out of order.
 * A tw_future is owned by one thread at a time.
 *
 * Lifetime: tw_client_connect() → calls → tw_client_close(). Close fails every request still
 * in flight with TW_E_CANCELLED, then frees the client; the arena memory is unmapped, so no
 * pointer into it may be used afterwards. Futures must be freed (tw_future_free) before or
 * after close, exactly once. An asynchronous call copies its inputs when it is made; its
 * result structures must stay valid until tw_future_wait has returned a final status.
 *
 * ABI stability: structs passed by pointer are only ever extended at their end; functions
 * are only ever added. TW_CLIENT_ABI_VERSION counts incompatible changes (never so far).
 */
#ifndef TW_CLIENT_H_
#define TW_CLIENT_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TW_CLIENT_ABI_VERSION 1
#define TW_KEY_SIZE 32

#if defined(__GNUC__)
#define TW_CLIENT_API __attribute__((visibility("default")))
#else
#define TW_CLIENT_API
#endif

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                   */

enum {
  TW_OK = 0,                    /* success */
  TW_E_CANCELLED = 1,           /* abandoned: the client was closed, or twd shut down */
  TW_E_INVALID_ARGUMENT = 3,    /* malformed input (a bad namespace field, range, key) */
  TW_E_DEADLINE_EXCEEDED = 4,   /* no answer before the timeout */
  TW_E_NOT_FOUND = 5,           /* the socket path does not exist */
  TW_E_ALREADY_EXISTS = 6,      /* the thing is already there */
  TW_E_PERMISSION_DENIED = 7,   /* the tenant may not use a namespace; socket modes */
  TW_E_RESOURCE_EXHAUSTED = 8,  /* a per-client limit, a buffer too small, out of memory */
  TW_E_FAILED_PRECONDITION = 9, /* wrong state (e.g. a namespace not declared at hello) */
  TW_E_UNIMPLEMENTED = 12,      /* twd does not support the operation or version */
  TW_E_INTERNAL = 13,           /* a bug, or an unclassified I/O error */
  TW_E_UNAVAILABLE = 14,        /* twd is not there or closed the connection */
  TW_E_DATA_LOSS = 15           /* stored bytes failed a checksum */
};

/* A static name for an error code ("INVALID_ARGUMENT"); "UNKNOWN" for others. */
TW_CLIENT_API const char* tw_error_name(int code);
/* The message of the last failed call on this thread ("" if none). Valid until the next
 * failing call on this thread. */
TW_CLIENT_API const char* tw_last_error(void);
/* The library's version ("0.1.0") and ABI version. */
TW_CLIENT_API const char* tw_client_version(void);
TW_CLIENT_API int tw_client_abi_version(void);

/* ---------------------------------------------------------------------------------------- */
/* Keys (docs/keys.md)                                                                      */

/* The nine namespace fields, in hashing order: NUL-terminated UTF-8; NULL means "". */
typedef struct tw_namespace {
  const char* model;
  const char* model_revision;
  const char* tokenizer;
  const char* kv_dtype;
  const char* kv_layout;
  const char* parallel;
  const char* adapter;
  const char* tenant;
  const char* chunk_tokens;
} tw_namespace;

/* Flags of the key functions. */
enum {
  TW_KEYS_NORMALIZE = 0,     /* normalise the namespace first (what every client does) */
  TW_KEYS_AS_GIVEN = 1u << 0 /* hash the fields exactly as given */
};

/* Arbitrary bytes (extra bytes of a chunk). */
typedef struct tw_bytes {
  const uint8_t* data;
  size_t size;
} tw_bytes;

/* Writes the canonical spelling of `in` to `out`, whose fields point into `buf`.
 * `*needed` (if not NULL) receives the bytes `buf` needs; when `buf_size` is smaller the call
 * fails with TW_E_RESOURCE_EXHAUSTED and `out` is untouched. 1 KiB + the input's length is
 * always enough. */
TW_CLIENT_API int tw_namespace_normalize(const tw_namespace* in, tw_namespace* out, char* buf,
                                         size_t buf_size, size_t* needed);

/* The 32-byte namespace digest (normalised first unless TW_KEYS_AS_GIVEN). */
TW_CLIENT_API int tw_namespace_digest(const tw_namespace* ns, uint32_t flags,
                                      uint8_t out[TW_KEY_SIZE]);

/* The chunk keys of every full chunk of `tokens`: writes min(chunks, out_capacity) keys of 32
 * bytes each to `out` and the number of full chunks to `*n_keys`; fails with
 * TW_E_RESOURCE_EXHAUSTED if out_capacity < chunks. `extras` (may be NULL when n_extras is
 * 0) names the extra bytes of chunk j at index j; entries past the last full chunk are
 * ignored. */
TW_CLIENT_API int tw_chunk_keys(const tw_namespace* ns, uint32_t flags, const uint32_t* tokens,
                                size_t n_tokens, const tw_bytes* extras, size_t n_extras,
                                uint8_t* out, size_t out_capacity, size_t* n_keys);

/* One step of the chain: k_j from k_{j-1}, the chunk's extra bytes and its token ids. */
TW_CLIENT_API int tw_chunk_key(const uint8_t parent[TW_KEY_SIZE], const uint8_t* extra,
                               size_t extra_size, const uint32_t* tokens, size_t n_tokens,
                               uint8_t out[TW_KEY_SIZE]);

/* ---------------------------------------------------------------------------------------- */
/* Results carried by batched calls                                                         */

/* Where a chunk is stored. */
enum {
  TW_TIER_NONE = 0, /* not stored */
  TW_TIER_DRAM = 1, /* in twd's DRAM tier */
  TW_TIER_NVME = 2, /* on NVMe only */
  TW_TIER_PEER = 3  /* on another node of the mesh (lookup), or served from one (get) */
};

/* Why a chunk was not served. */
enum {
  TW_MISS_NONE = 0,            /* not a miss */
  TW_MISS_ABSENT = 1,          /* never stored, or removed long ago */
  TW_MISS_EVICTED = 2,         /* recently evicted */
  TW_MISS_CORRUPT = 3,         /* stored bytes failed their checksum */
  TW_MISS_QUOTA = 4,           /* the namespace is over its quota */
  TW_MISS_DEADLINE = 5,        /* could not be served before the deadline */
  TW_MISS_IO_ERROR = 6,        /* the device failed the read */
  TW_MISS_PEER_UNREACHABLE = 7 /* a peer holding it did not answer */
};

/* What a put did. */
enum {
  TW_PUT_STORED = 0,             /* stored with the requested durability */
  TW_PUT_EXISTS = 1,             /* already stored: written once */
  TW_PUT_REJECTED_ADMISSION = 2, /* the admission policy declined it */
  TW_PUT_QUOTA = 3,              /* the namespace is over its quota */
  TW_PUT_BUSY = 4,               /* no space or bandwidth before the deadline */
  TW_PUT_IO_ERROR = 5,           /* the device failed the write */
  TW_PUT_INVALID = 6             /* rejected: key/inputs mismatch, bad ranges, tenant */
};

/* Durability of a put. */
enum {
  TW_DURABILITY_MEMORY = 0, /* acknowledged once in twd's DRAM */
  TW_DURABILITY_DISK = 1    /* acknowledged once on NVMe and findable after a crash */
};

/* Static lower-case names ("dram", "evicted", "stored", "disk"); "unknown" for others. */
TW_CLIENT_API const char* tw_tier_name(int tier);
TW_CLIENT_API const char* tw_miss_name(int miss);
TW_CLIENT_API const char* tw_put_result_name(int result);

/* ---------------------------------------------------------------------------------------- */
/* Connection                                                                               */

typedef struct tw_client tw_client;
typedef struct tw_future tw_future;

typedef struct tw_client_options {
  const char* socket_path;        /* twd's client socket */
  uint64_t arena_size;            /* bytes of shared memory to create (rounded up to 2 MiB) */
  const tw_namespace* namespaces; /* the namespaces this client will use (normalised here) */
  size_t n_namespaces;
  uint32_t timeout_ms;     /* connect + hello, and the default per call; 0 = 10000 */
  uint32_t max_in_flight;  /* requests in flight before calls wait; 0 = 64 */
  const char* client_name; /* shown in twd's logs; NULL = "libtwclient" */
} tw_client_options;

/* Connects, creates and pre-faults the arena, and says hello. */
TW_CLIENT_API int tw_client_connect(const tw_client_options* options, tw_client** out);
/* Fails every request in flight (TW_E_CANCELLED), closes the socket, unmaps the arena,
 * frees the client. NULL is a no-op. */
TW_CLIENT_API void tw_client_close(tw_client* client);
/* The arena: its base address and size in bytes. */
TW_CLIENT_API uint8_t* tw_client_arena(tw_client* client, uint64_t* size);
/* The digest of declared namespace `index` (normalised), as twd knows it. */
TW_CLIENT_API int tw_client_namespace_digest(tw_client* client, size_t index,
                                             uint8_t out[TW_KEY_SIZE]);
/* Limits twd granted at hello (0 when not announced). */
TW_CLIENT_API uint32_t tw_client_max_batch(tw_client* client);

/* ---------------------------------------------------------------------------------------- */
/* Operations                                                                               */

/* One byte range of a chunk's segment ↔ a byte range of the arena. */
typedef struct tw_scatter {
  uint32_t segment;      /* segment index (normally a layer) */
  uint64_t offset;       /* byte offset within the segment */
  uint64_t length;       /* bytes */
  uint64_t arena_offset; /* where in the arena */
} tw_scatter;

/* lookup: the longest stored prefix of a key chain. With tensor parallelism, `n_chains`
 * chains (one per rank, each under its own namespace, each `chain_length` keys) are looked
 * up at once and the answer is the longest prefix present in all of them.
 * `namespace_digests` holds n_chains digests, `keys` n_chains × chain_length keys (32 bytes
 * each, chain after chain). */
typedef struct tw_lookup_result {
  uint64_t prefix; /* leading chunks stored (for every chain) */
  uint8_t* tiers;  /* caller array of chain_length (may be NULL): tier of each chunk of the
                      first chain; TW_TIER_NONE past the prefix */
  int32_t miss;    /* why chunk `prefix` is missing (TW_MISS_NONE if all are stored) */
  uint64_t lease;  /* read lease keeping the prefix in place a short while; 0 = none */
} tw_lookup_result;

enum {
  TW_LOOKUP_LEASE = 1u << 0 /* ask for a read lease on the prefix */
};

/* get: one chunk (or ranges of it) into the arena. */
typedef struct tw_get_item {
  const uint8_t* key;              /* 32 bytes */
  const uint8_t* namespace_digest; /* 32 bytes: a namespace declared on this client */
  const tw_scatter* scatter;       /* ranges to read; n_scatter 0 = the whole value, contiguous
                                      at `arena_offset` */
  size_t n_scatter;
  uint64_t arena_offset; /* only when n_scatter == 0 */
  uint64_t arena_length; /* only when n_scatter == 0: bytes available there */
  /* results */
  int32_t tier;   /* TW_TIER_* served from; NONE on a miss */
  int32_t miss;   /* TW_MISS_* */
  uint64_t bytes; /* bytes written into the arena */
} tw_get_item;

/* put: one chunk from the arena. twd recomputes key = chunk_key(parent, extra, tokens) and
 * refuses the put (TW_PUT_INVALID) when it differs. */
typedef struct tw_put_item {
  const uint8_t* key;              /* 32 bytes */
  const uint8_t* parent;           /* 32 bytes: previous chunk key, or the namespace digest */
  const uint8_t* namespace_digest; /* 32 bytes: the chunk's (declared) namespace */
  const uint8_t* extra;            /* the chunk's extra bytes (may be NULL if extra_size 0) */
  size_t extra_size;
  const uint32_t* tokens; /* the chunk's token ids (chunk_tokens of them) */
  size_t n_tokens;
  const uint64_t* segment_sizes; /* the value's segments; NULL with n_segments 0 = one
                                    segment of the scatter's total length */
  size_t n_segments;
  const tw_scatter* scatter; /* must cover every byte of every segment exactly once */
  size_t n_scatter;
  /* result */
  int32_t result; /* TW_PUT_* */
} tw_put_item;

/* Synchronous calls. `timeout_ms` 0 = the client's default; it is also the request's
 * deadline at twd (data that cannot arrive before it is a miss). */
TW_CLIENT_API int tw_client_lookup(tw_client* client, const uint8_t* namespace_digests,
                                   const uint8_t* keys, size_t chain_length, size_t n_chains,
                                   uint32_t flags, uint32_t timeout_ms, tw_lookup_result* result);
TW_CLIENT_API int tw_client_get(tw_client* client, tw_get_item* items, size_t n_items,
                                uint64_t lease, uint32_t timeout_ms);
TW_CLIENT_API int tw_client_put(tw_client* client, tw_put_item* items, size_t n_items,
                                int durability, uint32_t timeout_ms);
/* exists: `tiers[i]` receives the tier of keys[i] (TW_TIER_NONE when absent), and
 * `value_sizes[i]` (may be NULL) its value size. All keys are under `namespace_digest`. */
TW_CLIENT_API int tw_client_exists(tw_client* client, const uint8_t* namespace_digest,
                                   const uint8_t* keys, size_t n_keys, uint8_t* tiers,
                                   uint64_t* value_sizes, uint32_t timeout_ms);
/* delete: `deleted[i]` (may be NULL) receives 1 when keys[i] was stored and is now gone. */
TW_CLIENT_API int tw_client_delete(tw_client* client, const uint8_t* namespace_digest,
                                   const uint8_t* keys, size_t n_keys, uint8_t* deleted,
                                   uint32_t timeout_ms);
/* Releases leases from lookups before they expire; `*released` (may be NULL) counts those
 * that were live. */
TW_CLIENT_API int tw_client_release_leases(tw_client* client, const uint64_t* leases,
                                           size_t n_leases, uint32_t* released,
                                           uint32_t timeout_ms);
/* ping: one round trip with an empty request. */
TW_CLIENT_API int tw_client_ping(tw_client* client, uint32_t timeout_ms);
/* stats: twd's counters as a JSON object, written NUL-terminated to `buf`; `*needed` gets
 * the size including the NUL (TW_E_RESOURCE_EXHAUSTED when buf_size is smaller). */
TW_CLIENT_API int tw_client_stats(tw_client* client, char* buf, size_t buf_size, size_t* needed,
                                  uint32_t timeout_ms);

/* Asynchronous calls: same arguments; the call returns once the request is sent, and
 * `*future` completes when twd has answered. The answer is copied into the caller's result
 * structures by tw_future_wait (on the waiting thread), so those must stay valid until then;
 * the request's inputs are copied at the call. */
TW_CLIENT_API int tw_client_lookup_async(tw_client* client, const uint8_t* namespace_digests,
                                         const uint8_t* keys, size_t chain_length, size_t n_chains,
                                         uint32_t flags, uint32_t timeout_ms,
                                         tw_lookup_result* result, tw_future** future);
TW_CLIENT_API int tw_client_get_async(tw_client* client, tw_get_item* items, size_t n_items,
                                      uint64_t lease, uint32_t timeout_ms, tw_future** future);
TW_CLIENT_API int tw_client_put_async(tw_client* client, tw_put_item* items, size_t n_items,
                                      int durability, uint32_t timeout_ms, tw_future** future);

/* Waits up to timeout_ms (UINT32_MAX = forever) for the future. Returns the call's status,
 * or TW_E_DEADLINE_EXCEEDED if it has not completed yet (the future stays valid). */
TW_CLIENT_API int tw_future_wait(tw_future* future, uint32_t timeout_ms);
/* 1 when completed, 0 otherwise. */
TW_CLIENT_API int tw_future_ready(tw_future* future);
/* Frees the future without copying results (whether or not it has completed). NULL is a
 * no-op. */
TW_CLIENT_API void tw_future_free(tw_future* future);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TW_CLIENT_H_ */
