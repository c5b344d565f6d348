#include "tw/mesh/rdma/soft_verbs.h"

#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace tw::mesh::rdma {

namespace {

struct SoftMr {
  uint32_t node = 0;
  uintptr_t addr = 0;
  uint64_t length = 0;
  uint32_t lkey = 0;
  uint32_t rkey = 0;
  uint32_t access = 0;
};

struct SoftQp {
  uint32_t node = 0;
  uint64_t cq = 0;
  uint32_t max_send_wr = 0;
  uint32_t outstanding = 0;  // posted, not completed
  QpState state = QpState::kReset;
  uint32_t remote_node = 0;  // from the remote GID
  uint32_t remote_qpn = 0;
  std::deque<ReadRequest> held;  // held by a stall, in post order
};

struct SoftCq {
  uint32_t node = 0;
  std::deque<Completion> entries;
  std::condition_variable cv;
};

struct SoftNode {
  std::string name;
  SoftFabric::Fault fault = SoftFabric::Fault::kNone;
  SoftFabric::NodeCounters counters;
};

Gid NodeGid(uint32_t node) {
  Gid g{};
  g[0] = 0xfe;
  g[1] = 0x80;
  g[12] = static_cast<uint8_t>(node >> 24);
  g[13] = static_cast<uint8_t>(node >> 16);
  g[14] = static_cast<uint8_t>(node >> 8);
  g[15] = static_cast<uint8_t>(node);
  return g;
}

uint32_t GidNode(const Gid& g) {
  return (uint32_t{g[12]} << 24) | (uint32_t{g[13]} << 16) | (uint32_t{g[14]} << 8) | g[15];
}

}  // namespace

struct SoftFabric::State {
  mutable std::mutex mu;
  std::vector<SoftNode> nodes;  // index = node id
  std::map<uint64_t, SoftMr> mrs;
  std::map<uint32_t, SoftQp> qps;  // by qpn
  std::map<uint64_t, std::unique_ptr<SoftCq>> cqs;
  std::map<uint64_t, uint32_t> pds;  // pd → node
  uint64_t next_handle = 1;
  uint32_t next_qpn = 0x100;
  uint32_t next_key = 0x1000;

  uint32_t NodeId(const std::string& name) {
    for (uint32_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i].name == name) return i;
    }
    nodes.push_back(SoftNode{name});
    return static_cast<uint32_t>(nodes.size() - 1);
  }
  bool Dead(uint32_t node) const { return nodes[node].fault == Fault::kDead; }
  bool Stalled(uint32_t node) const { return nodes[node].fault == Fault::kStall; }

  void Complete(uint32_t qpn, SoftQp& qp, uint64_t wr_id, WcStatus status) {
    --qp.outstanding;
    auto cq = cqs.find(qp.cq);
    if (cq == cqs.end()) return;  // the completion queue is gone: the completion is lost
    cq->second->entries.push_back(Completion{wr_id, status, qpn});
    cq->second->cv.notify_all();
  }

  void ToError(uint32_t qpn, SoftQp& qp) {
    qp.state = QpState::kError;
    while (!qp.held.empty()) {
      uint64_t id = qp.held.front().wr_id;
      qp.held.pop_front();
      --nodes[qp.node].counters.reads_held;
      Complete(qpn, qp, id, WcStatus::kFlushed);
    }
  }

  const SoftMr* FindMr(uint32_t node, bool remote, uint32_t key, uint64_t addr, uint64_t len) {
    for (auto& [h, mr] : mrs) {
      if (mr.node != node || (remote ? mr.rkey : mr.lkey) != key) continue;
      if (addr < mr.addr || addr + len > mr.addr + mr.length) return nullptr;
      return &mr;
    }
    return nullptr;
  }

  // Runs one READ of a queue pair in RTS.
  void Execute(uint32_t qpn, SoftQp& qp, const ReadRequest& wr) {
    const SoftMr* local = FindMr(qp.node, false, wr.lkey, wr.local_addr, wr.length);
    if (local == nullptr || !(local->access & kLocalWrite)) {
      Complete(qpn, qp, wr.wr_id, WcStatus::kLocalProtectionError);
      ToError(qpn, qp);
      return;
    }
    auto remote_qp = qps.find(qp.remote_qpn);
    if (qp.remote_node >= nodes.size() || Dead(qp.remote_node) || remote_qp == qps.end() ||
        remote_qp->second.node != qp.remote_node ||
        (remote_qp->second.state != QpState::kRtr && remote_qp->second.state != QpState::kRts)) {
      Complete(qpn, qp, wr.wr_id, WcStatus::kRetryExceeded);
      ToError(qpn, qp);
      return;
    }
    const SoftMr* remote = FindMr(qp.remote_node, true, wr.rkey, wr.remote_addr, wr.length);
    if (remote == nullptr || !(remote->access & kRemoteRead)) {
      Complete(qpn, qp, wr.wr_id, WcStatus::kRemoteAccessError);
      ToError(qpn, qp);
      ToError(remote_qp->first, remote_qp->second);  // the responder's queue pair fails too
      return;
    }
    std::memcpy(reinterpret_cast<void*>(wr.local_addr),
                reinterpret_cast<const void*>(wr.remote_addr), wr.length);
    auto& c = nodes[qp.node].counters;
    ++c.reads_executed;
    c.bytes_read += wr.length;
    Complete(qpn, qp, wr.wr_id, WcStatus::kSuccess);
  }

  // The remote queue pair exists but is not ready to respond yet (RESET or INIT): the
  // hardware would retry, so the READ waits for it.
  bool TargetPending(const SoftQp& qp) const {
    auto r = qps.find(qp.remote_qpn);
    return r != qps.end() && r->second.node == qp.remote_node &&
           (r->second.state == QpState::kReset || r->second.state == QpState::kInit);
  }

  // Whether a READ of `qp` must wait: a stall on either end, or a target not ready yet.
  bool MustHold(const SoftQp& qp) const {
    return Stalled(qp.node) || (qp.remote_node < nodes.size() && Stalled(qp.remote_node)) ||
           TargetPending(qp);
  }

  // Runs the held READs that nothing holds any more.
  void RunHeld() {
    for (auto& [qpn, qp] : qps) {
      while (!qp.held.empty() && qp.state == QpState::kRts && !MustHold(qp)) {
        ReadRequest wr = qp.held.front();
        qp.held.pop_front();
        --nodes[qp.node].counters.reads_held;
        Execute(qpn, qp, wr);
      }
    }
  }
};

namespace {

class SoftVerbs final : public Verbs {
 public:
  SoftVerbs(std::shared_ptr<SoftFabric::State> s, uint32_t node) : s_(std::move(s)), node_(node) {
    port_.device = "soft_" + s_->nodes[node].name;
    port_.port = 1;
    port_.lid = static_cast<uint16_t>(node + 1);
    port_.gid = NodeGid(node);
    port_.mtu = 4096;
    port_.ethernet = true;
  }

  const PortInfo& port() const override { return port_; }

  StatusOr<PdHandle> AllocPd() override {
    std::lock_guard<std::mutex> l(s_->mu);
    TW_RETURN_IF_ERROR(AliveLocked());
    uint64_t h = s_->next_handle++;
    s_->pds[h] = node_;
    return PdHandle{h};
  }
  Status DeallocPd(PdHandle pd) override {
    std::lock_guard<std::mutex> l(s_->mu);
    s_->pds.erase(pd.v);
    return OkStatus();
  }

  StatusOr<MemoryRegion> RegMr(PdHandle pd, void* addr, size_t length, uint32_t access) override {
    std::lock_guard<std::mutex> l(s_->mu);
    TW_RETURN_IF_ERROR(AliveLocked());
    if (s_->pds.count(pd.v) == 0) return InvalidArgumentError("soft verbs: unknown pd");
    if (addr == nullptr || length == 0) return InvalidArgumentError("soft verbs: empty region");
    uint64_t h = s_->next_handle++;
    SoftMr mr{node_, reinterpret_cast<uintptr_t>(addr), length, s_->next_key++, s_->next_key++,
              access};
    s_->mrs[h] = mr;
    return MemoryRegion{MrHandle{h}, mr.lkey, mr.rkey};
  }
  Status DeregMr(MrHandle mr) override {
    std::lock_guard<std::mutex> l(s_->mu);
    s_->mrs.erase(mr.v);
    return OkStatus();
  }

  StatusOr<CqHandle> CreateCq(uint32_t depth) override {
    std::lock_guard<std::mutex> l(s_->mu);
    TW_RETURN_IF_ERROR(AliveLocked());
    if (depth == 0) return InvalidArgumentError("soft verbs: completion queue depth 0");
    uint64_t h = s_->next_handle++;
    s_->cqs[h] = std::make_unique<SoftCq>();
    s_->cqs[h]->node = node_;
    return CqHandle{h};
  }
  Status DestroyCq(CqHandle cq) override {
    std::lock_guard<std::mutex> l(s_->mu);
    s_->cqs.erase(cq.v);
    return OkStatus();
  }

  StatusOr<QpHandle> CreateQp(PdHandle pd, CqHandle cq, uint32_t max_send_wr,
                              uint32_t* qpn) override {
    std::lock_guard<std::mutex> l(s_->mu);
    TW_RETURN_IF_ERROR(AliveLocked());
    if (s_->pds.count(pd.v) == 0 || s_->cqs.count(cq.v) == 0) {
      return InvalidArgumentError("soft verbs: unknown pd or cq");
    }
    uint32_t n = s_->next_qpn++;
    SoftQp qp;
    qp.node = node_;
    qp.cq = cq.v;
    qp.max_send_wr = max_send_wr;
    s_->qps[n] = std::move(qp);
    auto& c = s_->nodes[node_].counters;
    ++c.qps_created;
    ++c.qps_live;
    *qpn = n;
    return QpHandle{n};
  }

  Status ModifyQpToInit(QpHandle h) override {
    return Transition(h, QpState::kReset, QpState::kInit, nullptr);
  }
  Status ModifyQpToRtr(QpHandle h, const QpEndpoint& remote) override {
    if (remote.qpn == 0 || remote.mtu < 256) {
      return InvalidArgumentError("soft verbs: RTR needs a remote qpn and an MTU");
    }
    return Transition(h, QpState::kInit, QpState::kRtr, &remote);
  }
  Status ModifyQpToRts(QpHandle h, uint32_t) override {
    return Transition(h, QpState::kRtr, QpState::kRts, nullptr);
  }
  Status ModifyQpToError(QpHandle h) override {
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->qps.find(static_cast<uint32_t>(h.v));
    if (it == s_->qps.end()) return NotFoundError("soft verbs: no queue pair " + Qpn(h));
    s_->ToError(it->first, it->second);
    s_->RunHeld();
    return OkStatus();
  }
  Status DestroyQp(QpHandle h) override {
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->qps.find(static_cast<uint32_t>(h.v));
    if (it == s_->qps.end()) return OkStatus();  // vanished with a dead node
    s_->nodes[node_].counters.reads_held -= it->second.held.size();
    --s_->nodes[node_].counters.qps_live;
    s_->qps.erase(it);
    s_->RunHeld();  // READs waiting for it to become ready now fail
    return OkStatus();
  }

  Status PostRead(QpHandle h, const ReadRequest& wr) override {
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->qps.find(static_cast<uint32_t>(h.v));
    if (it == s_->qps.end()) return NotFoundError("soft verbs: no queue pair " + Qpn(h));
    SoftQp& qp = it->second;
    if (qp.state != QpState::kRts && qp.state != QpState::kError) {
      return FailedPreconditionError("soft verbs: post on queue pair " + Qpn(h) + " in state " +
                                     std::string(ToString(qp.state)));
    }
    if (qp.outstanding >= qp.max_send_wr) {
      return ResourceExhaustedError("soft verbs: send queue of queue pair " + Qpn(h) + " full");
    }
    ++qp.outstanding;
    ++s_->nodes[node_].counters.reads_posted;
    if (qp.state == QpState::kError) {
      s_->Complete(it->first, qp, wr.wr_id, WcStatus::kFlushed);
    } else if (!qp.held.empty() || s_->MustHold(qp)) {
      qp.held.push_back(wr);
      ++s_->nodes[node_].counters.reads_held;
    } else {
      s_->Execute(it->first, qp, wr);
    }
    return OkStatus();
  }

  StatusOr<size_t> PollCq(CqHandle cq, std::span<Completion> out) override {
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->cqs.find(cq.v);
    if (it == s_->cqs.end()) return NotFoundError("soft verbs: no completion queue");
    size_t n = 0;
    auto& q = it->second->entries;
    while (n < out.size() && !q.empty()) {
      out[n++] = q.front();
      q.pop_front();
    }
    return n;
  }

  Status WaitCq(CqHandle cq, std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> l(s_->mu);
    auto it = s_->cqs.find(cq.v);
    if (it == s_->cqs.end()) return NotFoundError("soft verbs: no completion queue");
    SoftCq* c = it->second.get();
    c->cv.wait_for(l, timeout, [&] { return !c->entries.empty(); });
    return OkStatus();
  }

 private:
  static std::string Qpn(QpHandle h) { return std::to_string(h.v); }
  Status AliveLocked() const {
    if (s_->Dead(node_)) return UnavailableError("soft verbs: device of a dead node");
    return OkStatus();
  }
  Status Transition(QpHandle h, QpState from, QpState to, const QpEndpoint* remote) {
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->qps.find(static_cast<uint32_t>(h.v));
    if (it == s_->qps.end()) return NotFoundError("soft verbs: no queue pair " + Qpn(h));
    SoftQp& qp = it->second;
    if (qp.state != from) {
      return FailedPreconditionError("soft verbs: queue pair " + Qpn(h) + " to " +
                                     std::string(ToString(to)) + " from " +
                                     std::string(ToString(qp.state)));
    }
    if (remote != nullptr) {
      qp.remote_node = GidNode(remote->gid);
      qp.remote_qpn = remote->qpn;
    }
    qp.state = to;
    s_->RunHeld();  // READs waiting for this queue pair to respond may run now
    return OkStatus();
  }

  std::shared_ptr<SoftFabric::State> s_;
  const uint32_t node_;
  PortInfo port_;
};

}  // namespace

SoftFabric::SoftFabric() : state_(std::make_shared<State>()) {}
SoftFabric::~SoftFabric() = default;

std::unique_ptr<Verbs> SoftFabric::OpenDevice(const std::string& node) {
  std::lock_guard<std::mutex> l(state_->mu);
  return std::make_unique<SoftVerbs>(state_, state_->NodeId(node));
}

void SoftFabric::SetFault(const std::string& node, Fault fault) {
  std::lock_guard<std::mutex> l(state_->mu);
  uint32_t id = state_->NodeId(node);
  state_->nodes[id].fault = fault;
  if (fault == Fault::kDead) {
    // Its queue pairs vanish with their held work (no completion); its regions are gone.
    for (auto it = state_->qps.begin(); it != state_->qps.end();) {
      if (it->second.node == id) {
        state_->nodes[id].counters.qps_live--;
        state_->nodes[id].counters.reads_held -= it->second.held.size();
        it = state_->qps.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = state_->mrs.begin(); it != state_->mrs.end();) {
      it = it->second.node == id ? state_->mrs.erase(it) : std::next(it);
    }
    // READs held on the way to it fail now.
    for (auto& [qpn, qp] : state_->qps) {
      if (qp.remote_node != id || qp.held.empty()) continue;
      ReadRequest first = qp.held.front();
      qp.held.pop_front();
      --state_->nodes[qp.node].counters.reads_held;
      state_->Complete(qpn, qp, first.wr_id, WcStatus::kRetryExceeded);
      state_->ToError(qpn, qp);
    }
  }
  state_->RunHeld();
}

SoftFabric::NodeCounters SoftFabric::counters(const std::string& node) const {
  std::lock_guard<std::mutex> l(state_->mu);
  for (const auto& n : state_->nodes) {
    if (n.name == node) return n.counters;
  }
  return NodeCounters{};
}

}  // namespace tw::mesh::rdma
