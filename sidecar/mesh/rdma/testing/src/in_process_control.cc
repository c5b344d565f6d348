#include "tw/mesh/rdma/in_process_control.h"

namespace tw::mesh::rdma {

void InProcessControl::AddNode(const std::string& node, RdmaControlHandler* handler) {
  std::lock_guard<std::mutex> l(mu_);
  handlers_[node] = handler;
}

void InProcessControl::RemoveNode(const std::string& node) {
  std::lock_guard<std::mutex> l(mu_);
  handlers_.erase(node);
}

void InProcessControl::SetUnreachable(const std::string& node, bool unreachable) {
  std::lock_guard<std::mutex> l(mu_);
  unreachable_[node] = unreachable;
}

void InProcessControl::CorruptNextGrants(const std::string& node, int n) {
  std::lock_guard<std::mutex> l(mu_);
  corrupt_[node] = n;
}

InProcessControl::Calls InProcessControl::calls(const std::string& node) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = calls_.find(node);
  return it == calls_.end() ? Calls{} : it->second;
}

StatusOr<RdmaControlHandler*> InProcessControl::Find(const std::string& node,
                                                     uint64_t Calls::*counter) {
  std::lock_guard<std::mutex> l(mu_);
  ++(calls_[node].*counter);
  if (unreachable_[node]) return UnavailableError("control: " + node + " unreachable");
  auto it = handlers_.find(node);
  if (it == handlers_.end()) return UnavailableError("control: no node " + node);
  return it->second;
}

StatusOr<QpEndpoint> InProcessControl::Connect(const Peer& peer, const ConnectRequest& request,
                                               Deadline) {
  TW_ASSIGN_OR_RETURN(auto* h, Find(peer.node, &Calls::connect));
  return h->HandleConnect(request);
}

StatusOr<RequestConnectReply> InProcessControl::RequestConnect(const Peer& peer,
                                                               const std::string& from_node,
                                                               uint32_t failed_qpn,
                                                               Deadline deadline) {
  TW_ASSIGN_OR_RETURN(auto* h, Find(peer.node, &Calls::request_connect));
  return h->HandleRequestConnect(from_node, failed_qpn, deadline);
}

StatusOr<ReadGrant> InProcessControl::PrepareRead(const Peer& peer, const std::string& from_node,
                                                  const FetchSpec& spec, Deadline deadline) {
  TW_ASSIGN_OR_RETURN(auto* h, Find(peer.node, &Calls::prepare));
  ReadGrant g = h->HandlePrepareRead(from_node, spec, deadline);
  std::lock_guard<std::mutex> l(mu_);
  if (corrupt_[peer.node] > 0 && g.miss == MissReason::kNone) {
    --corrupt_[peer.node];
    g.rkey ^= 0x5a5a;
  }
  return g;
}

void InProcessControl::Release(const Peer& peer, uint64_t token) {
  auto h = Find(peer.node, &Calls::release);
  if (h.ok()) (*h)->HandleRelease(token);
}

}  // namespace tw::mesh::rdma
