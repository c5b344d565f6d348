// Listening Unix sockets for twd: a lock file (`<path>.lock`, flock'ed for the life of the
// listener) so a second twd on the same path is refused while a stale socket file from a
// crashed twd is replaced; file mode and group applied before listen().
//
// Threading: plain functions. Lifetime: the returned ListeningSocket closes the socket,
// unlinks the path and drops the lock on destruction.
#pragma once

#include <cstdint>
#include <string>

#include "session.h"
#include "tw/common/status.h"
#include "tw/protocol/fd_passing.h"

namespace tw::twd {

struct ListeningSocket {
  protocol::UniqueFd fd;
  protocol::UniqueFd lock;
  std::string path;

  ListeningSocket() = default;
  ListeningSocket(ListeningSocket&&) = default;
  ListeningSocket& operator=(ListeningSocket&&) = default;
  ~ListeningSocket();
  // Closes the socket and unlinks its path (keeps nothing listening); idempotent.
  void Close();
};

// Binds and listens on `path` (non-blocking, close-on-exec). `group` "" keeps the process's
// group. Fails with FAILED_PRECONDITION when another live process holds the lock.
StatusOr<ListeningSocket> Listen(const std::string& path, uint32_t mode, const std::string& group);

// The credentials of a connected peer as the kernel recorded them at connect(): pid, uid and
// primary gid (SO_PEERCRED) and supplementary groups (SO_PEERGROUPS). Fields it cannot read
// stay zero/empty, which maps to no tenant unless uid or gid 0 is configured.
PeerCredentials PeerOf(int fd);

}  // namespace tw::twd
