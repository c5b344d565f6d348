// MisbehavingTwd — a stand-in for twd's client socket that does what the real twd must never
// do, for the libtwclient tests that need it: answer pipelined requests in reverse order (or
// never), send garbage, hang up, send a fatal error, answer an older protocol version, refuse
// large arenas; and it reports what it received (the form lookup keys came in, arena offsets),
// which the real twd keeps to itself. Everything else is tested against the real twd
// (real_twd.h). It speaks the real frame codec and messages (tw_protocol), maps the client's
// arena from the HELLO memfd and keeps chunks in a map, with none of twd's real work (no
// tiers, no tenancy, no key verification beyond the chain check). The admin opcodes are
// served on the same socket.
//
// Threading: Start() spawns an accept thread and one thread per connection; the store is
// shared under a mutex; the knobs are atomics and may be set from the test thread. Lifetime:
// Start() → ... → the destructor stops the thread and removes the socket.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tw/common/keys.h"
#include "tw/common/status.h"

namespace tw::client::testing {

class MisbehavingTwd {
 public:
  MisbehavingTwd() = default;
  ~MisbehavingTwd();
  MisbehavingTwd(const MisbehavingTwd&) = delete;
  MisbehavingTwd& operator=(const MisbehavingTwd&) = delete;

  // Listens on `socket_path` (and on `admin_path` too when not empty).
  Status Start(const std::string& socket_path, const std::string& admin_path = "");
  const std::string& socket_path() const { return path_; }

  // Knobs.
  std::atomic<int> reverse_window{0};  // > 1: answer every N requests in reverse order
  std::atomic<int> garbage_after{-1};  // >= 0: after this many requests, send bad bytes
  std::atomic<int> hang_up_after{-1};  // >= 0: after this many requests, close
  std::atomic<int> fatal_after{-1};    // >= 0: then a fatal error (request id 0), close
  std::atomic<int> requests_seen{0};
  std::atomic<uint64_t> last_arena_size{0};
  std::atomic<uint32_t> version{1};         // the protocol version hello answers (1..3)
  std::atomic<uint64_t> max_arena_size{0};  // > 0: hello refuses larger arenas, as twd does
  // Lookup chains seen, by the form their keys came in.
  std::atomic<int> chains_repeated{0}, chains_packed{0}, chains_in_arena{0};

  // Number of stored chunks.
  size_t chunks() const;
  // Arena offsets of the key chains of the last lookup whose keys lay in the arena.
  std::vector<uint64_t> last_arena_offsets() const;

 private:
  struct Chunk {
    Key parent;
    Key namespace_digest;
    std::vector<uint32_t> tokens;
    std::string extra;
    std::vector<uint64_t> segment_sizes;
    std::string value;  // segments back to back
  };
  void Serve();
  void ServeConnection(int fd);

  std::string path_;
  std::vector<std::string> paths_;
  std::vector<int> listen_fds_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> connections_;  // accept thread only
  mutable std::mutex mu_;
  std::map<Key, Chunk> store_;           // guarded by mu_
  std::map<Key, Namespace> declared_;    // guarded by mu_: fields by digest
  std::vector<uint64_t> arena_offsets_;  // guarded by mu_: see last_arena_offsets()
};

}  // namespace tw::client::testing
