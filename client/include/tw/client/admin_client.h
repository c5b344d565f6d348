// tw::client::AdminClient — a connection to twd's admin socket (mode 0600): namespace
// listing, eviction of a namespace, export of stored chunks, store-wide stats. Same framing
// as the client protocol; no hello and no arena (docs/protocol.md, "Admin socket").
//
// Threading: thread-safe, like Client; Export's callback runs on the connection's reader
// thread, one call per exported chunk, in order. Lifetime: Connect() → calls → destroy.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tw/client/types.h"
#include "tw/common/keys.h"
#include "tw/common/status.h"

namespace tw::client {

class Connection;

struct NamespaceInfo {
  Key digest;
  uint64_t chunks = 0;
  uint64_t bytes = 0;
  uint64_t quota = 0;               // 0 = none
  std::optional<Namespace> fields;  // known once a client declared it (kept across restarts)
};

struct ExportedChunk {
  Key key;
  Key parent;
  Key namespace_digest;
  std::optional<Namespace> fields;
  std::vector<uint32_t> tokens;
  std::string extra;
  uint64_t value_size = 0;
  Tier tier = Tier::kNone;
  int64_t created_unix_ms = 0;
};
// One JSON object (one line): namespace fields (or null), digests and keys in hex, token ids,
// extra bytes in hex — what a training pipeline needs to rebuild prefixes.
std::string ExportedChunkToJson(const ExportedChunk& c);

// One peer of the mesh as a twd sees it (`twctl peers`).
struct PeerInfo {
  std::string node;
  bool up = true;         // false while it cools off after a failure
  std::string transport;  // "tcp" / "rdma"
  uint64_t fetches = 0;
  uint64_t failures = 0;
  uint64_t bytes_in = 0;   // value bytes received from it
  uint64_t bytes_out = 0;  // value bytes served to it
  std::string last_error;
};
struct PeersInfo {
  bool enabled = false;  // mesh.enabled
  std::string node;      // this twd's node name
  std::string transport;
  uint64_t membership_version = 0;
  uint64_t directory_keys = 0;
  uint64_t announce_batches_failed = 0;
  std::vector<PeerInfo> peers;
};
// One JSON object: the fields above, `peers` as a list.
std::string PeersInfoToJson(const PeersInfo& p);

class AdminClient {
 public:
  using ms = std::chrono::milliseconds;
  static StatusOr<std::unique_ptr<AdminClient>> Connect(const std::string& admin_socket_path,
                                                        ms timeout = ms(10000));
  ~AdminClient();
  AdminClient(const AdminClient&) = delete;
  AdminClient& operator=(const AdminClient&) = delete;

  StatusOr<std::vector<NamespaceInfo>> Namespaces();
  // Removes every chunk of the namespace; returns how many.
  StatusOr<uint64_t> EvictNamespace(const Key& digest);
  // Streams stored chunks (of one namespace when `digest` is set; at most `max_chunks`
  // when > 0) to `on_chunk`. Returns once the stream has ended.
  Status Export(const std::optional<Key>& digest, uint64_t max_chunks,
                const std::function<void(const ExportedChunk&)>& on_chunk);
  // The stored chunk `key` (its namespace digest, the namespace's fields when known, token
  // ids, ...) without a scan, or nullopt when it is not stored.
  StatusOr<std::optional<ExportedChunk>> FindChunk(const Key& key);
  // Store-wide counters and the Prometheus text of every metric.
  StatusOr<std::pair<Stats, std::string>> GetStats();
  // The mesh's peers (enabled = false when twd runs without the mesh).
  StatusOr<PeersInfo> Peers();

 private:
  AdminClient(std::unique_ptr<Connection> conn, ms timeout);
  std::unique_ptr<Connection> conn_;
  ms timeout_;
};

}  // namespace tw::client
