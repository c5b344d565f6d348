/* c_example: libtwclient's C ABI end to end, in C99. Connects to twd, stores the KV value
 * of the first chunk of a token sequence from the arena, looks the chain up, reads the value
 * back into another part of the arena and compares.
 *
 *   tw-client-example SOCKET_PATH
 *
 * Exit status 0 when the value came back intact (or was already stored and came back). */
#include <stdio.h>
#include <string.h>

#include "tw_client.h"

#define CHUNK_TOKENS 16
#define VALUE_BYTES (1u << 20)

static int fail(const char* what, int code) {
  fprintf(stderr, "%s: %s: %s\n", what, tw_error_name(code), tw_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s SOCKET_PATH\n", argv[0]);
    return 2;
  }
  tw_namespace ns;
  memset(&ns, 0, sizeof ns);
  ns.model = "c-example";
  ns.kv_dtype = "bfloat16"; /* normalised to bf16 */
  ns.chunk_tokens = "16";

  uint32_t tokens[CHUNK_TOKENS];
  for (uint32_t i = 0; i < CHUNK_TOKENS; ++i) tokens[i] = 1000 + i;
  uint8_t key[TW_KEY_SIZE];
  size_t n_keys = 0;
  int rc = tw_chunk_keys(&ns, TW_KEYS_NORMALIZE, tokens, CHUNK_TOKENS, NULL, 0, key, 1, &n_keys);
  if (rc != TW_OK) return fail("chunk keys", rc);

  tw_client_options o;
  memset(&o, 0, sizeof o);
  o.socket_path = argv[1];
  o.arena_size = 2 * VALUE_BYTES;
  o.namespaces = &ns;
  o.n_namespaces = 1;
  o.client_name = "c-example";
  tw_client* c = NULL;
  rc = tw_client_connect(&o, &c);
  if (rc != TW_OK) return fail("connect", rc);
  uint8_t digest[TW_KEY_SIZE];
  tw_client_namespace_digest(c, 0, digest);

  uint64_t arena_size = 0;
  uint8_t* arena = tw_client_arena(c, &arena_size);
  for (uint32_t i = 0; i < VALUE_BYTES; ++i) arena[i] = (uint8_t)(i * 31u);

  tw_scatter whole = {0, 0, VALUE_BYTES, 0};
  tw_put_item put;
  memset(&put, 0, sizeof put);
  put.key = key;
  put.parent = digest; /* chunk 1: its parent is the namespace digest */
  put.namespace_digest = digest;
  put.tokens = tokens;
  put.n_tokens = CHUNK_TOKENS;
  put.scatter = &whole;
  put.n_scatter = 1;
  rc = tw_client_put(c, &put, 1, TW_DURABILITY_MEMORY, 0);
  if (rc != TW_OK) return fail("put", rc);
  printf("put: %s\n", tw_put_result_name(put.result));

  uint8_t tier = 0;
  tw_lookup_result lr;
  memset(&lr, 0, sizeof lr);
  lr.tiers = &tier;
  rc = tw_client_lookup(c, digest, key, 1, 1, TW_LOOKUP_LEASE, 0, &lr);
  if (rc != TW_OK) return fail("lookup", rc);
  printf("lookup: prefix %llu, tier %s\n", (unsigned long long)lr.prefix, tw_tier_name(tier));

  tw_get_item get;
  memset(&get, 0, sizeof get);
  get.key = key;
  get.namespace_digest = digest;
  get.arena_offset = VALUE_BYTES;
  get.arena_length = VALUE_BYTES;
  tw_future* f = NULL;
  rc = tw_client_get_async(c, &get, 1, lr.lease, 0, &f);
  if (rc != TW_OK) return fail("get", rc);
  rc = tw_future_wait(f, UINT32_MAX);
  tw_future_free(f);
  if (rc != TW_OK) return fail("get", rc);
  int same = get.miss == TW_MISS_NONE && get.bytes == VALUE_BYTES &&
             memcmp(arena, arena + VALUE_BYTES, VALUE_BYTES) == 0;
  printf("get: %s from %s, %llu bytes, %s\n", get.miss == TW_MISS_NONE ? "hit" : "miss",
         get.miss == TW_MISS_NONE ? tw_tier_name(get.tier) : tw_miss_name(get.miss),
         (unsigned long long)get.bytes, same ? "identical" : "DIFFERENT");
  tw_client_close(c);
  return same ? 0 : 1;
}
