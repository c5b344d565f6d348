// Membership: the peers of this node's mesh, as an immutable snapshot.
//
// The source is the peers file the operator renders into a ConfigMap (or an operator of a
// machine writes by hand):
//   {"peers":[{"node":"n1","address":"10.0.0.1","port":7470}, ...]}
// Each peer may also carry "weight" (a positive number, default 1): its share of placement
// (placement.h). The operator does not write weights today; a hand-written file may. Unknown
// fields are ignored, so an older twd reads a newer operator's file. An empty list is valid
// (a mesh of nobody: every key is local-only). Parse errors name the field
// ("peers[2].port: must be an integer in 1..65535").
//
// Threading: a Membership is immutable once built; share it as shared_ptr<const Membership>
// and read it from any thread. Lifetime: a value; a snapshot outlives every reader holding it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tw/common/status.h"

namespace tw::mesh {

// Most peers one file may list (a DaemonSet over the largest clusters stays far below).
inline constexpr size_t kMaxPeers = 100000;

struct Peer {
  std::string node;     // node name, unique in the file
  std::string address;  // IP address or DNS name of its peer service
  uint32_t port = 0;    // 1..65535
  double weight = 1.0;  // share of placement; > 0 and finite

  friend bool operator==(const Peer&, const Peer&) = default;
};

class Membership {
 public:
  // Checks the peers (non-empty unique node names, non-empty addresses, ports 1..65535,
  // weights > 0 and finite) and sorts them by node name.
  static StatusOr<Membership> Create(std::vector<Peer> peers, uint64_t version);

  // Peers sorted by node name.
  const std::vector<Peer>& peers() const { return peers_; }
  // 0 for the empty membership a watcher starts with; each published change adds one.
  uint64_t version() const { return version_; }
  size_t size() const { return peers_.size(); }
  bool empty() const { return peers_.empty(); }
  // The peer named `node`, or nullptr.
  const Peer* Find(std::string_view node) const;
  bool Contains(std::string_view node) const { return Find(node) != nullptr; }
  // Same peers (versions aside).
  bool SamePeers(const Membership& other) const { return peers_ == other.peers_; }

 private:
  Membership(std::vector<Peer> peers, uint64_t version)
      : peers_(std::move(peers)), version_(version) {}
  std::vector<Peer> peers_;
  uint64_t version_ = 0;
};

// Parses the peers file's JSON. Errors are INVALID_ARGUMENT and name the bad field.
StatusOr<std::vector<Peer>> ParsePeersJson(std::string_view json);

}  // namespace tw::mesh
