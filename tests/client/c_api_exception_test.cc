// No C++ exception crosses libtwclient's C ABI: an allocation that fails inside an entry point
// comes back as TW_E_INTERNAL with the message in tw_last_error(), not as std::terminate.
//
// The test hook is this binary's replacement of the global operator new (linked with the
// static libtwclient, so the library's allocations come here): armed, it throws std::bad_alloc
// on the calling thread's next allocation, once.
#include <gtest/gtest.h>

#include <cstdlib>
#include <new>
#include <string>

#include "tw_client.h"

namespace {
thread_local bool t_fail_next_allocation = false;
}  // namespace

void* operator new(std::size_t n) {
  if (t_fail_next_allocation) {
    t_fail_next_allocation = false;
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// GCC takes these for mismatched pairs; they are the replacement pair of the operator new above.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace {

// Field values longer than any small-string buffer, so copying them allocates.
const std::string kLong(64, 'm');

tw_namespace LongNamespace() {
  tw_namespace ns{};
  ns.model = kLong.c_str();
  ns.model_revision = kLong.c_str();
  ns.kv_dtype = "bf16";
  ns.chunk_tokens = "16";
  return ns;
}

// Arms the hook, runs `call`, and checks the code and message of the failure.
template <typename Call>
void ExpectInternal(const char* entry, Call call) {
  t_fail_next_allocation = true;
  const int rc = call();
  const bool fired = !t_fail_next_allocation;
  t_fail_next_allocation = false;
  ASSERT_TRUE(fired) << entry << " allocated nothing: the test proves nothing";
  EXPECT_EQ(rc, TW_E_INTERNAL) << entry;
  const std::string message = tw_last_error();
  EXPECT_NE(message.find(entry), std::string::npos) << message;
  EXPECT_NE(message.find("bad_alloc"), std::string::npos) << message;
}

TEST(CApiException, AllocationFailureIsInternalNotAnAbort) {
  const tw_namespace ns = LongNamespace();
  uint8_t digest[TW_KEY_SIZE];
  ExpectInternal("tw_namespace_digest", [&] { return tw_namespace_digest(&ns, 0, digest); });

  uint32_t tokens[32] = {};
  uint8_t keys[2 * TW_KEY_SIZE];
  size_t n_keys = 0;
  ExpectInternal("tw_chunk_keys",
                 [&] { return tw_chunk_keys(&ns, 0, tokens, 32, nullptr, 0, keys, 2, &n_keys); });

  tw_namespace out{};
  char buf[4096];
  size_t needed = 0;
  ExpectInternal("tw_namespace_normalize",
                 [&] { return tw_namespace_normalize(&ns, &out, buf, sizeof buf, &needed); });

  const std::string socket = "/nonexistent/" + kLong + "/twd.sock";
  tw_client_options options{};
  options.socket_path = socket.c_str();
  options.namespaces = &ns;
  options.n_namespaces = 1;
  tw_client* client = nullptr;
  ExpectInternal("tw_client_connect", [&] { return tw_client_connect(&options, &client); });
  EXPECT_EQ(client, nullptr);

  // The library is intact afterwards: the same calls succeed.
  EXPECT_EQ(tw_namespace_digest(&ns, 0, digest), TW_OK) << tw_last_error();
  EXPECT_EQ(tw_chunk_keys(&ns, 0, tokens, 32, nullptr, 0, keys, 2, &n_keys), TW_OK);
  EXPECT_EQ(n_keys, 2u);
}

}  // namespace
