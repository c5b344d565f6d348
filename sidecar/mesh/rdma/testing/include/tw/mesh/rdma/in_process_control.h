// InProcessControl: the RDMA control plane between transports in one process, for tests. It
// stands where the peer service's rpcs will: a call names a peer, and the control calls that
// node's registered RdmaControlHandler on the caller's thread.
//
// Faults: SetUnreachable(node) makes every call to that node fail with Unavailable, as a dead
// process or a cut link does; CorruptNextGrants(node, n) hands out the next n grants of that
// holder with a wrong rkey, so the READ fails with a remote access error.
//
// Threading: all methods may be called from any thread. Lifetime: handlers must be removed
// (or outlive the control) before they are destroyed.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>

#include "tw/mesh/rdma/rdma_control.h"

namespace tw::mesh::rdma {

class InProcessControl final : public RdmaControl {
 public:
  void AddNode(const std::string& node, RdmaControlHandler* handler);
  void RemoveNode(const std::string& node);
  void SetUnreachable(const std::string& node, bool unreachable);
  void CorruptNextGrants(const std::string& node, int n);

  StatusOr<QpEndpoint> Connect(const Peer& peer, const ConnectRequest& request,
                               Deadline deadline) override;
  StatusOr<RequestConnectReply> RequestConnect(const Peer& peer, const std::string& from_node,
                                               uint32_t failed_qpn, Deadline deadline) override;
  StatusOr<ReadGrant> PrepareRead(const Peer& peer, const std::string& from_node,
                                  const FetchSpec& spec, Deadline deadline) override;
  void Release(const Peer& peer, uint64_t token) override;

  struct Calls {
    uint64_t connect = 0;
    uint64_t request_connect = 0;
    uint64_t prepare = 0;
    uint64_t release = 0;
  };
  // Calls made to `node` (including failed ones).
  Calls calls(const std::string& node) const;

 private:
  StatusOr<RdmaControlHandler*> Find(const std::string& node, uint64_t Calls::*counter);

  mutable std::mutex mu_;
  std::map<std::string, RdmaControlHandler*> handlers_;  // GUARDED_BY(mu_)
  std::map<std::string, bool> unreachable_;              // GUARDED_BY(mu_)
  std::map<std::string, int> corrupt_;                   // GUARDED_BY(mu_)
  std::map<std::string, Calls> calls_;                   // GUARDED_BY(mu_)
};

}  // namespace tw::mesh::rdma
