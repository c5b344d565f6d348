// The requester's side of the raw wire (wire_codec.h): a pool of open connections per peer and
// the Locate and Fetch exchanges on one connection. PeerClient decides when to use them (a
// peer whose Health names a wire port, no TLS) and keeps the cool-off bookkeeping.
//
// A connection carries one exchange at a time: a caller takes one (an idle one, or a new one),
// runs its exchange and gives it back only when the exchange ended cleanly; any error, a
// deadline included, closes it, so a late answer never reaches a later exchange and nothing is
// written into a destination after the call returned (only the calling thread reads the socket).
//
// Threading: WirePool's methods may be called from any thread (one mutex, never held across
// I/O); an exchange runs on the caller's thread. Lifetime: the pool closes its idle connections
// when destroyed; a taken connection is the caller's until it gives it back or closes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "tw/common/status.h"
#include "tw/mesh/transport.h"
#include "wire_io.h"

namespace tw::mesh::net {

class WirePool {
 public:
  // Idle connections kept per peer (more are closed when given back).
  explicit WirePool(size_t max_idle = 8) : max_idle_(max_idle) {}
  ~WirePool();
  WirePool(const WirePool&) = delete;
  WirePool& operator=(const WirePool&) = delete;

  struct Taken {
    int fd = -1;
    bool reused = false;  // an idle connection: it may have been closed by the peer meanwhile
  };
  // An idle connection to `node` at address:port, else a new one (connected by `deadline`).
  StatusOr<Taken> Take(const std::string& node, const std::string& address, uint32_t port,
                       Deadline deadline, bool fresh = false);
  // Back to the idle set after a clean exchange.
  void Give(const std::string& node, int fd);
  // Closes every idle connection to `node` (its address changed, or it failed).
  void Drop(const std::string& node);

 private:
  struct Idle {
    std::string target;  // address:port the connections go to
    std::vector<int> fds;
  };
  const size_t max_idle_;
  std::mutex mu_;
  absl::flat_hash_map<std::string, Idle> idle_;  // GUARDED_BY(mu_)
};

// Sends a Locate of `keys`.
Status WireLocateSend(int fd, std::span<const Key> keys, Deadline deadline);
// Reads its answer: per key its holders. `*got` counts the bytes read.
StatusOr<LocateAnswer> WireLocateRecv(int fd, size_t keys, Deadline deadline, size_t* got);

// One Fetch on `fd`: the value of `spec` straight into `dest`. Returns the result (a hit, the
// holder's miss, or kIoError for a bad answer, with InvalidArgument in `error` when the value
// does not fit `dest`), or a status when the exchange itself failed (the connection is then
// unusable: UNAVAILABLE, DEADLINE_EXCEEDED, or the holder's refusal). `*reusable`: the
// connection may carry another exchange. `*got` counts the bytes read.
StatusOr<FetchResult> WireFetch(int fd, const FetchSpec& spec, const std::string& from_node,
                                std::span<std::byte> dest, Deadline deadline, bool* reusable,
                                size_t* got);

}  // namespace tw::mesh::net
