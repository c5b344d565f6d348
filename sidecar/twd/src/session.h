// Session: what twd knows about one client connection once HELLO succeeded — the peer's
// credentials, its tenant, its mapped arena and the namespaces it declared.
//
// Threading: credentials, tenant and the arena are fixed after HELLO and read by any worker
// without locking. The declared-namespace map changes on DECLARE_NAMESPACES: it is guarded
// by `mu`. Lifetime: owned (through shared_ptr) by the connection and by every in-flight
// request of it, so the arena stays mapped until the last request of a closed connection
// finished (no late write can land in an unmapped or reused arena).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tw/common/keys.h"
#include "tw/protocol/fd_passing.h"

namespace tw::twd {

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;              // primary group
  std::vector<gid_t> groups;  // supplementary groups
};

struct DeclaredNamespace {
  Namespace fields;
  uint32_t chunk_tokens = 0;
};

struct Session {
  uint64_t id = 0;
  PeerCredentials peer;
  bool admin = false;       // connected on the admin socket
  bool hello_done = false;  // set by the connection's reactor thread only
  uint32_t version = 0;     // negotiated protocol version
  std::string client_name;
  std::string tenant;     // "" = single-tenant mode
  protocol::Arena arena;  // empty when the client passed none

  std::mutex mu;
  std::map<Key, DeclaredNamespace> namespaces;  // GUARDED_BY(mu)

  // Whether `digest` was declared (cheaper than Find: nothing is copied).
  bool Declares(const Key& digest) {
    std::lock_guard lock(mu);
    return namespaces.contains(digest);
  }

  // The declared namespace, or nullopt.
  std::optional<DeclaredNamespace> Find(const Key& digest) {
    std::lock_guard lock(mu);
    auto it = namespaces.find(digest);
    if (it == namespaces.end()) return std::nullopt;
    return it->second;
  }
};

}  // namespace tw::twd
