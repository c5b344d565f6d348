// tw::client::Client — libtwclient's C++ API: a connection to twd's client socket with a
// shared-memory arena (docs/clients.md, docs/protocol.md).
//
// Connect() creates and pre-faults the arena (tw::client::Arena), connects, and says hello
// declaring the namespaces the client will use (normalised here, as every client does); twd
// answers with their digests. Requests then name chunks by KeyRef (key + namespace digest)
// and arena byte ranges; KV bytes never cross the socket.
//
// Every operation is batched and comes in two forms: `FooAsync(...)` sends the request and
// returns a Future that completes when twd answers (requests are pipelined with ids and may
// complete out of order), and `Foo(...)`, which sends the same request and reads its reply on
// the calling thread when no other thread is reading the connection. A request's `timeout`
// is also its deadline at twd: data that cannot arrive in time is a miss with reason
// kDeadline. Await gives up `kAwaitSlack` after the deadline with kDeadlineExceeded (twd did
// not answer at all); the arena ranges of such a request must not be reused until the
// connection is closed.
//
// Threading: all methods are thread-safe; any number of threads may have requests in
// flight. Futures complete on the connection's reader thread, or on a thread inside a
// synchronous call that read their reply. Lifetime: destroying the
// Client (or Close()) fails requests in flight with kCancelled and unmaps the arena.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tw/client/arena.h"
#include "tw/client/types.h"
#include "tw/common/keys.h"
#include "tw/common/status.h"

namespace tw::client {

class Connection;
class KeyArea;

template <typename T>
using Future = std::future<StatusOr<T>>;

// How long Await waits past a request's deadline before deciding twd will not answer.
inline constexpr std::chrono::milliseconds kAwaitSlack{2000};

// Waits for `f` for up to `timeout` (+ kAwaitSlack). REQUIRES: f.valid().
template <typename T>
StatusOr<T> Await(Future<T>& f, std::chrono::milliseconds timeout) {
  if (f.wait_for(timeout + kAwaitSlack) != std::future_status::ready) {
    return DeadlineExceededError("twd did not answer before the deadline");
  }
  return f.get();
}

struct ClientOptions {
  std::string socket_path;                    // twd's client socket
  uint64_t arena_size = uint64_t{256} << 20;  // bytes of shared memory (rounded to 2 MiB)
  // Shared memory after the arena, reserved for lookup key chains (protocol version 3: twd
  // reads them there instead of from the socket); rounded to 2 MiB. 0: keys go in messages.
  uint64_t key_area_size = uint64_t{2} << 20;
  std::vector<Namespace> namespaces;         // declared at hello
  std::chrono::milliseconds timeout{10000};  // connect + hello, and the default per call
  uint32_t max_in_flight = 64;               // requests in flight before Send waits
  std::string client_name = "libtwclient";   // shown in twd's logs
};

class Client {
 public:
  using ms = std::chrono::milliseconds;
  static constexpr ms kDefault{0};  // "use options.timeout"

  static StatusOr<std::unique_ptr<Client>> Connect(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // The arena requests name ranges of.
  const Arena& arena() const { return arena_; }
  uint8_t* arena_data() const { return arena_.data(); }
  uint64_t arena_size() const { return arena_.size(); }
  const SessionInfo& session() const { return session_; }
  // Digest of declared namespace `i` (as twd computed it).
  const Key& namespace_digest(size_t i) const { return session_.namespace_digests.at(i); }
  ms default_timeout() const { return options_.timeout; }

  // Declares more namespaces; returns their digests.
  StatusOr<std::vector<Key>> DeclareNamespaces(const std::vector<Namespace>& namespaces,
                                               ms timeout = kDefault);

  // lookup: one reply per item; an item is one chain per tensor-parallel rank.
  Future<std::vector<LookupReply>> LookupAsync(const std::vector<std::vector<LookupChain>>& items,
                                               bool take_lease, ms timeout = kDefault);
  StatusOr<std::vector<LookupReply>> Lookup(const std::vector<std::vector<LookupChain>>& items,
                                            bool take_lease, ms timeout = kDefault);
  // Convenience: one chain, one item.
  StatusOr<LookupReply> LookupChainOf(const Key& namespace_digest, std::span<const Key> keys,
                                      bool take_lease = false, ms timeout = kDefault);
  StatusOr<uint32_t> ReleaseLeases(const std::vector<uint64_t>& leases, ms timeout = kDefault);

  Future<std::vector<GetReply>> GetAsync(const std::vector<GetItem>& items, ms timeout = kDefault);
  StatusOr<std::vector<GetReply>> Get(const std::vector<GetItem>& items, ms timeout = kDefault);

  Future<std::vector<PutReply>> PutAsync(const std::vector<PutItem>& items, ms timeout = kDefault);
  StatusOr<std::vector<PutReply>> Put(const std::vector<PutItem>& items, ms timeout = kDefault);

  StatusOr<std::vector<ExistsReply>> Exists(const std::vector<KeyRef>& refs, ms timeout = kDefault);
  StatusOr<std::vector<bool>> Delete(const std::vector<KeyRef>& refs, ms timeout = kDefault);
  StatusOr<Stats> GetStats(ms timeout = kDefault);
  // Round trip with an empty body.
  Status Ping(ms timeout = kDefault);

  // Fails requests in flight with kCancelled and closes the socket. Idempotent; the arena
  // stays mapped until the Client is destroyed.
  void Close();

  // For callers that wait on an *Async call's future right away (the synchronous methods above
  // do better: no future at all): while a ReadsOwnReply lives on a thread, the requests that thread
  // sends do not wake the connection's reader thread, and WaitReady() then reads their
  // replies on the calling thread — saving the hand-off from the reader thread, which costs
  // more than twd's answer to a small request. REQUIRES: the thread calls WaitReady() (or
  // waits on the future) right after sending.
  class ReadsOwnReply {
   public:
    ReadsOwnReply();
    ~ReadsOwnReply();
    ReadsOwnReply(const ReadsOwnReply&) = delete;
    ReadsOwnReply& operator=(const ReadsOwnReply&) = delete;
  };
  // Returns once `ready()` (true once the awaited future is ready) or at `deadline`,
  // reading and completing replies on this thread meanwhile when no other thread reads.
  void WaitReady(const std::function<bool()>& ready,
                 std::chrono::steady_clock::time_point deadline);

 private:
  Client(ClientOptions options, Arena arena, std::unique_ptr<Connection> conn);
  // Connect() with normalised options: arena, connection, hello.
  static StatusOr<std::unique_ptr<Client>> ConnectOnce(const ClientOptions& options);
  ms Effective(ms timeout) const { return timeout.count() > 0 ? timeout : options_.timeout; }

  ClientOptions options_;
  Arena arena_;
  std::unique_ptr<Connection> conn_;
  SessionInfo session_;
  std::unique_ptr<KeyArea> key_area_;  // null unless version 3 and options.key_area_size > 0
};

}  // namespace tw::client
