#include "tw/mesh/rdma/ib_verbs.h"

#include <infiniband/verbs.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace tw::mesh::rdma {

namespace {

uint32_t MtuBytes(ibv_mtu m) {
  switch (m) {
    case IBV_MTU_256:
      return 256;
    case IBV_MTU_512:
      return 512;
    case IBV_MTU_1024:
      return 1024;
    case IBV_MTU_2048:
      return 2048;
    case IBV_MTU_4096:
      return 4096;
  }
  return 1024;
}

ibv_mtu MtuEnum(uint32_t bytes) {
  if (bytes >= 4096) return IBV_MTU_4096;
  if (bytes >= 2048) return IBV_MTU_2048;
  if (bytes >= 1024) return IBV_MTU_1024;
  if (bytes >= 512) return IBV_MTU_512;
  return IBV_MTU_256;
}

Status Errno(int err, const std::string& what) { return ErrnoStatus(err, "ibverbs: " + what); }

WcStatus MapStatus(ibv_wc_status s) {
  switch (s) {
    case IBV_WC_SUCCESS:
      return WcStatus::kSuccess;
    case IBV_WC_LOC_PROT_ERR:
      return WcStatus::kLocalProtectionError;
    case IBV_WC_REM_ACCESS_ERR:
      return WcStatus::kRemoteAccessError;
    case IBV_WC_RETRY_EXC_ERR:
    case IBV_WC_RNR_RETRY_EXC_ERR:
      return WcStatus::kRetryExceeded;
    case IBV_WC_WR_FLUSH_ERR:
      return WcStatus::kFlushed;
    default:
      return WcStatus::kOther;
  }
}

uint32_t IbAccess(uint32_t access) {
  uint32_t a = 0;
  if (access & kLocalWrite) a |= IBV_ACCESS_LOCAL_WRITE;
  if (access & kRemoteRead) a |= IBV_ACCESS_REMOTE_READ;
  if (access & kRemoteWrite) a |= IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE;
  return a;
}

struct DeviceList {
  ibv_device** list = nullptr;
  int n = 0;
  DeviceList() { list = ibv_get_device_list(&n); }
  ~DeviceList() {
    if (list) ibv_free_device_list(list);
  }
};

struct IbCq {
  ibv_comp_channel* channel = nullptr;
  ibv_cq* cq = nullptr;
};

class IbVerbs final : public Verbs {
 public:
  IbVerbs(ibv_context* ctx, PortInfo port, const ibv_device_attr& attr)
      : ctx_(ctx),
        port_(std::move(port)),
        rd_atomic_(static_cast<uint8_t>(
            std::clamp(std::min(attr.max_qp_rd_atom, attr.max_qp_init_rd_atom), 1, 16))),
        max_cqe_(static_cast<uint32_t>(std::max(attr.max_cqe, 1))) {}
  ~IbVerbs() override { ibv_close_device(ctx_); }

  const PortInfo& port() const override { return port_; }

  StatusOr<PdHandle> AllocPd() override {
    ibv_pd* pd = ibv_alloc_pd(ctx_);
    if (pd == nullptr) return Errno(errno, "ibv_alloc_pd");
    return PdHandle{reinterpret_cast<uint64_t>(pd)};
  }
  Status DeallocPd(PdHandle pd) override {
    int rc = ibv_dealloc_pd(reinterpret_cast<ibv_pd*>(pd.v));
    return rc == 0 ? OkStatus() : Errno(rc, "ibv_dealloc_pd");
  }

  StatusOr<MemoryRegion> RegMr(PdHandle pd, void* addr, size_t length, uint32_t access) override {
    ibv_mr* mr = ibv_reg_mr(reinterpret_cast<ibv_pd*>(pd.v), addr, length,
                            static_cast<int>(IbAccess(access)));
    if (mr == nullptr) {
      return Errno(errno, "ibv_reg_mr of " + std::to_string(length) + " bytes");
    }
    // Some drivers once truncated large registrations silently: check what we got.
    if (mr->length < length) {
      ibv_dereg_mr(mr);
      return ResourceExhaustedError("ibverbs: ibv_reg_mr registered fewer bytes than asked");
    }
    return MemoryRegion{MrHandle{reinterpret_cast<uint64_t>(mr)}, mr->lkey, mr->rkey};
  }
  Status DeregMr(MrHandle mr) override {
    int rc = ibv_dereg_mr(reinterpret_cast<ibv_mr*>(mr.v));
    return rc == 0 ? OkStatus() : Errno(rc, "ibv_dereg_mr");
  }

  StatusOr<CqHandle> CreateCq(uint32_t depth) override {
    auto* c = new IbCq;
    c->channel = ibv_create_comp_channel(ctx_);
    if (c->channel == nullptr) {
      int err = errno;
      delete c;
      return Errno(err, "ibv_create_comp_channel");
    }
    c->cq =
        ibv_create_cq(ctx_, static_cast<int>(std::min(depth, max_cqe_)), nullptr, c->channel, 0);
    if (c->cq == nullptr) {
      int err = errno;
      ibv_destroy_comp_channel(c->channel);
      delete c;
      return Errno(err, "ibv_create_cq of depth " + std::to_string(depth));
    }
    ibv_req_notify_cq(c->cq, 0);
    return CqHandle{reinterpret_cast<uint64_t>(c)};
  }
  Status DestroyCq(CqHandle h) override {
    auto* c = reinterpret_cast<IbCq*>(h.v);
    int rc = ibv_destroy_cq(c->cq);
    if (rc != 0) return Errno(rc, "ibv_destroy_cq");
    ibv_destroy_comp_channel(c->channel);
    delete c;
    return OkStatus();
  }

  StatusOr<QpHandle> CreateQp(PdHandle pd, CqHandle cq, uint32_t max_send_wr,
                              uint32_t* qpn) override {
    auto* c = reinterpret_cast<IbCq*>(cq.v);
    ibv_qp_init_attr attr{};
    attr.send_cq = c->cq;
    attr.recv_cq = c->cq;
    attr.qp_type = IBV_QPT_RC;
    attr.sq_sig_all = 1;
    attr.cap.max_send_wr = max_send_wr;
    attr.cap.max_recv_wr = 1;
    attr.cap.max_send_sge = 1;
    attr.cap.max_recv_sge = 1;
    ibv_qp* qp = ibv_create_qp(reinterpret_cast<ibv_pd*>(pd.v), &attr);
    if (qp == nullptr) return Errno(errno, "ibv_create_qp");
    *qpn = qp->qp_num;
    return QpHandle{reinterpret_cast<uint64_t>(qp)};
  }

  Status ModifyQpToInit(QpHandle h) override {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_INIT;
    a.pkey_index = 0;
    a.port_num = port_.port;
    a.qp_access_flags = IBV_ACCESS_REMOTE_READ | IBV_ACCESS_LOCAL_WRITE;
    return Modify(h, a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS,
                  "INIT");
  }
  Status ModifyQpToRtr(QpHandle h, const QpEndpoint& remote) override {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = MtuEnum(std::min(port_.mtu, remote.mtu));
    a.dest_qp_num = remote.qpn;
    a.rq_psn = remote.psn;
    a.max_dest_rd_atomic = rd_atomic_;  // READs the peer may have in flight against us
    a.min_rnr_timer = 12;
    a.ah_attr.port_num = port_.port;
    a.ah_attr.dlid = remote.lid;
    bool global = port_.ethernet || remote.lid == 0;
    if (global) {
      a.ah_attr.is_global = 1;
      std::memcpy(a.ah_attr.grh.dgid.raw, remote.gid.data(), 16);
      a.ah_attr.grh.sgid_index = port_.gid_index;
      a.ah_attr.grh.hop_limit = 64;
    }
    return Modify(h, a,
                  IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                      IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER,
                  "RTR");
  }
  Status ModifyQpToRts(QpHandle h, uint32_t local_psn) override {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_RTS;
    a.sq_psn = local_psn;
    a.timeout = 14;  // 4.096 µs × 2^14 ≈ 67 ms per try
    a.retry_cnt = 7;
    a.rnr_retry = 7;
    a.max_rd_atomic = rd_atomic_;  // READs in flight on the wire (more wait in the queue)
    return Modify(h, a,
                  IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                      IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC,
                  "RTS");
  }
  Status ModifyQpToError(QpHandle h) override {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_ERR;
    return Modify(h, a, IBV_QP_STATE, "ERR");
  }
  Status DestroyQp(QpHandle h) override {
    int rc = ibv_destroy_qp(reinterpret_cast<ibv_qp*>(h.v));
    return rc == 0 ? OkStatus() : Errno(rc, "ibv_destroy_qp");
  }

  Status PostRead(QpHandle h, const ReadRequest& wr) override {
    ibv_sge sge{};
    sge.addr = wr.local_addr;
    sge.length = wr.length;
    sge.lkey = wr.lkey;
    ibv_send_wr w{};
    w.wr_id = wr.wr_id;
    w.sg_list = &sge;
    w.num_sge = 1;
    w.opcode = IBV_WR_RDMA_READ;
    w.send_flags = IBV_SEND_SIGNALED;
    w.wr.rdma.remote_addr = wr.remote_addr;
    w.wr.rdma.rkey = wr.rkey;
    ibv_send_wr* bad = nullptr;
    int rc = ibv_post_send(reinterpret_cast<ibv_qp*>(h.v), &w, &bad);
    return rc == 0 ? OkStatus() : Errno(rc, "ibv_post_send");
  }

  StatusOr<size_t> PollCq(CqHandle h, std::span<Completion> out) override {
    auto* c = reinterpret_cast<IbCq*>(h.v);
    ibv_wc wc[64];
    int want = static_cast<int>(std::min<size_t>(out.size(), 64));
    int n = ibv_poll_cq(c->cq, want, wc);
    if (n < 0) return InternalError("ibverbs: ibv_poll_cq failed");
    for (int i = 0; i < n; ++i) {
      out[i] = Completion{wc[i].wr_id, MapStatus(wc[i].status), wc[i].qp_num};
    }
    return static_cast<size_t>(n);
  }

  Status WaitCq(CqHandle h, std::chrono::milliseconds timeout) override {
    auto* c = reinterpret_cast<IbCq*>(h.v);
    pollfd p{c->channel->fd, POLLIN, 0};
    int rc = poll(&p, 1, static_cast<int>(timeout.count()));
    if (rc < 0) return Errno(errno, "poll on the completion channel");
    if (rc == 0) return OkStatus();
    ibv_cq* ev_cq = nullptr;
    void* ev_ctx = nullptr;
    if (ibv_get_cq_event(c->channel, &ev_cq, &ev_ctx) == 0) {
      ibv_ack_cq_events(ev_cq, 1);
      ibv_req_notify_cq(ev_cq, 0);
    }
    return OkStatus();
  }

 private:
  Status Modify(QpHandle h, ibv_qp_attr& a, int mask, const char* to) {
    int rc = ibv_modify_qp(reinterpret_cast<ibv_qp*>(h.v), &a, mask);
    return rc == 0 ? OkStatus() : Errno(rc, std::string("ibv_modify_qp to ") + to);
  }

  ibv_context* ctx_;
  PortInfo port_;
  uint8_t rd_atomic_;  // the device's limit on READs in flight per queue pair, at most 16
  uint32_t max_cqe_;
};

// The GID index to use on an Ethernet (RoCE) port: RoCE v2 with an IPv4-mapped address first,
// then any RoCE v2, then 0.
int ChooseRoceGid(ibv_context* ctx, uint8_t port, int table_len) {
  int any_v2 = -1;
  for (int i = 0; i < table_len; ++i) {
    ibv_gid_entry e{};
    if (ibv_query_gid_ex(ctx, port, static_cast<uint32_t>(i), &e, 0) != 0) continue;
    if (e.gid_type != IBV_GID_TYPE_ROCE_V2) continue;
    const uint8_t* raw = e.gid.raw;
    bool v4 = std::all_of(raw, raw + 10, [](uint8_t b) { return b == 0; }) && raw[10] == 0xff &&
              raw[11] == 0xff;
    if (v4) return i;
    if (any_v2 < 0) any_v2 = i;
  }
  return any_v2 < 0 ? 0 : any_v2;
}

}  // namespace

StatusOr<std::vector<IbDeviceInfo>> ListIbDevices() {
  DeviceList devs;
  std::vector<IbDeviceInfo> out;
  if (devs.list == nullptr) return out;
  for (int i = 0; i < devs.n; ++i) {
    IbDeviceInfo info;
    info.name = ibv_get_device_name(devs.list[i]);
    ibv_context* ctx = ibv_open_device(devs.list[i]);
    if (ctx != nullptr) {
      ibv_device_attr attr{};
      if (ibv_query_device(ctx, &attr) == 0) {
        for (uint8_t p = 1; p <= attr.phys_port_cnt; ++p) {
          ibv_port_attr pa{};
          if (ibv_query_port(ctx, p, &pa) != 0) continue;
          info.ports.push_back(
              IbPortInfo{p, ibv_port_state_str(pa.state),
                         pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet" : "InfiniBand",
                         MtuBytes(pa.active_mtu), pa.lid});
        }
      }
      ibv_close_device(ctx);
    }
    out.push_back(std::move(info));
  }
  return out;
}

StatusOr<std::unique_ptr<Verbs>> OpenIbVerbs(const std::string& device, int gid_index) {
  if (gid_index < -1 || gid_index > 255) {
    return InvalidArgumentError("rdma: gid_index must be in -1..255");
  }
  DeviceList devs;
  if (devs.list == nullptr || devs.n == 0) {
    return UnavailableError("rdma: no RDMA device (ibv_get_device_list found none)");
  }
  std::string seen;
  for (int i = 0; i < devs.n; ++i) {
    std::string name = ibv_get_device_name(devs.list[i]);
    seen += (seen.empty() ? "" : ", ") + name;
    if (!device.empty() && name != device) continue;
    ibv_context* ctx = ibv_open_device(devs.list[i]);
    if (ctx == nullptr) continue;
    ibv_device_attr attr{};
    if (ibv_query_device(ctx, &attr) != 0) {
      ibv_close_device(ctx);
      continue;
    }
    for (uint8_t p = 1; p <= attr.phys_port_cnt; ++p) {
      ibv_port_attr pa{};
      if (ibv_query_port(ctx, p, &pa) != 0 || pa.state != IBV_PORT_ACTIVE) continue;
      PortInfo port;
      port.device = name;
      port.port = p;
      port.lid = pa.lid;
      port.mtu = MtuBytes(pa.active_mtu);
      port.ethernet = pa.link_layer == IBV_LINK_LAYER_ETHERNET;
      int gi =
          gid_index >= 0 ? gid_index : (port.ethernet ? ChooseRoceGid(ctx, p, pa.gid_tbl_len) : 0);
      ibv_gid gid{};
      if (ibv_query_gid(ctx, p, gi, &gid) != 0) {
        ibv_close_device(ctx);
        return Errno(errno, "ibv_query_gid " + name + " port " + std::to_string(p));
      }
      std::memcpy(port.gid.data(), gid.raw, 16);
      port.gid_index = static_cast<uint8_t>(gi);
      return std::unique_ptr<Verbs>(new IbVerbs(ctx, std::move(port), attr));
    }
    ibv_close_device(ctx);
  }
  if (!device.empty()) {
    return NotFoundError("rdma: device " + device +
                         " not found or has no ACTIVE port (found: " + seen + ")");
  }
  return UnavailableError("rdma: no device has an ACTIVE port (found: " + seen + ")");
}

}  // namespace tw::mesh::rdma
