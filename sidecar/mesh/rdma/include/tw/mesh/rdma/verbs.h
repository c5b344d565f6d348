// Verbs: the RDMA verbs calls the mesh's RDMA transport makes, and nothing more.
//
// One `Verbs` object is one opened device port (what `ibv_open_device` + `ibv_query_port` +
// `ibv_query_gid` give). The transport allocates a protection domain, registers memory,
// creates one completion queue and one RC queue pair per peer, drives each queue pair
// RESET → INIT → RTR → RTS, posts signaled one-sided RDMA READs and polls completions. Two
// implementations: `IbVerbs` over libibverbs (ib_verbs.h) and `SoftVerbs` for tests, a fabric
// in one process that moves bytes between registered regions with the same completion, error
// and queue-pair state rules (testing/soft_verbs.h).
//
// Semantics every implementation keeps (those of the verbs specification):
// - PostRead on a queue pair in RESET, INIT or RTR fails at once; on a queue pair in ERR it is
//   accepted and completes with kFlushed. Completions of one queue pair arrive in post order.
// - A work request that fails (remote access error, retry exceeded, local protection error)
//   completes with that status and moves its queue pair to ERR; the work requests behind it,
//   and those posted later, complete with kFlushed. Nothing is written into the local buffer of
//   a work request that completed with an error.
// - After ModifyQpToError every outstanding work request completes (kFlushed or its real
//   outcome); once a work request's completion has been polled, its local buffer is never
//   written again. DestroyQp on a queue pair with work outstanding may lose those completions,
//   so the transport destroys a queue pair only once its work has all completed.
//
// Handles are opaque numbers that only the implementation that made them understands; 0 is
// "none". Threading: PostRead, PollCq and WaitCq may be called from any thread at once; the
// other calls from any thread, but not on the same object concurrently with its use (the
// transport serialises a queue pair's state changes under its link's lock). Lifetime: every
// handle must be destroyed before the Verbs object.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tw/common/status.h"

namespace tw::mesh::rdma {

using Gid = std::array<uint8_t, 16>;

struct PdHandle {
  uint64_t v = 0;
};
struct MrHandle {
  uint64_t v = 0;
};
struct CqHandle {
  uint64_t v = 0;
};
struct QpHandle {
  uint64_t v = 0;
};

// The port a Verbs object opened.
struct PortInfo {
  std::string device;     // e.g. "mlx5_0"
  uint8_t port = 1;       // 1-based port number
  uint16_t lid = 0;       // InfiniBand local identifier (0 on RoCE)
  Gid gid{};              // the GID used for addressing (RoCE, or IB across subnets)
  uint8_t gid_index = 0;  // its index in the port's GID table
  uint32_t mtu = 4096;    // active path MTU in bytes (256..4096)
  bool ethernet = false;  // link layer: true for RoCE, false for InfiniBand
};

// Memory access rights of a registration (a subset of ibv_access_flags).
enum Access : uint32_t {
  kLocalWrite = 1u << 0,   // the local NIC may write it (the landing buffer of a READ)
  kRemoteRead = 1u << 1,   // a peer may READ it (a holder's staging ring)
  kRemoteWrite = 1u << 2,  // a peer may WRITE it (unused by the mesh; tests check it is refused)
};

struct MemoryRegion {
  MrHandle handle;
  uint32_t lkey = 0;
  uint32_t rkey = 0;
};

// What one side of a queue pair tells the other to connect (exchanged over the control plane).
struct QpEndpoint {
  uint32_t qpn = 0;  // queue pair number
  uint16_t lid = 0;
  Gid gid{};
  uint32_t psn = 0;  // first packet sequence number this side sends (24 bits)
  uint32_t mtu = 0;  // this side's port MTU in bytes; the pair uses the smaller
  friend bool operator==(const QpEndpoint&, const QpEndpoint&) = default;
};

enum class QpState : uint8_t {
  kReset = 0,  // just created, or reset
  kInit = 1,   // bound to a port, access rights set
  kRtr = 2,    // ready to receive: knows its remote
  kRts = 3,    // ready to send: work may be posted
  kError = 4,  // failed: outstanding and later work completes with kFlushed
};
std::string_view ToString(QpState s);

// The outcome of one work request (a subset of ibv_wc_status; the rest map to kOther).
enum class WcStatus : uint8_t {
  kSuccess = 0,               // the bytes are in the local buffer
  kLocalProtectionError = 1,  // the local buffer is not registered with local write rights
  kRemoteAccessError = 2,     // bad rkey, range outside the remote region, or no read rights
  kRetryExceeded = 3,         // the remote did not answer (gone, link down, its QP destroyed)
  kFlushed = 4,               // not executed: the queue pair was (or went) in error
  kOther = 5,                 // any other failure
};
std::string_view ToString(WcStatus s);

struct Completion {
  uint64_t wr_id = 0;
  WcStatus status = WcStatus::kSuccess;
  uint32_t qpn = 0;  // the local queue pair it belongs to
};

// One signaled RDMA READ: `length` bytes from the peer's (remote_addr, rkey) into the local
// (local_addr, lkey).
struct ReadRequest {
  uint64_t wr_id = 0;
  uint64_t local_addr = 0;
  uint32_t lkey = 0;
  uint32_t length = 0;
  uint64_t remote_addr = 0;
  uint32_t rkey = 0;
};

class Verbs {
 public:
  virtual ~Verbs() = default;

  virtual const PortInfo& port() const = 0;

  virtual StatusOr<PdHandle> AllocPd() = 0;
  virtual Status DeallocPd(PdHandle pd) = 0;

  // REQUIRES: length > 0. `access` is a set of Access bits.
  virtual StatusOr<MemoryRegion> RegMr(PdHandle pd, void* addr, size_t length, uint32_t access) = 0;
  virtual Status DeregMr(MrHandle mr) = 0;

  virtual StatusOr<CqHandle> CreateCq(uint32_t depth) = 0;
  virtual Status DestroyCq(CqHandle cq) = 0;

  // An RC queue pair in RESET whose send and receive completions go to `cq`; at most
  // `max_send_wr` work requests outstanding. `*qpn` receives its number.
  virtual StatusOr<QpHandle> CreateQp(PdHandle pd, CqHandle cq, uint32_t max_send_wr,
                                      uint32_t* qpn) = 0;
  // RESET → INIT with remote READ allowed on this side (so the peer may read our regions).
  virtual Status ModifyQpToInit(QpHandle qp) = 0;
  // INIT → RTR towards `remote`; the path MTU is min(ours, remote.mtu).
  virtual Status ModifyQpToRtr(QpHandle qp, const QpEndpoint& remote) = 0;
  // RTR → RTS; `local_psn` is what we announced in our endpoint.
  virtual Status ModifyQpToRts(QpHandle qp, uint32_t local_psn) = 0;
  // Any state → ERR: outstanding work completes (flushed).
  virtual Status ModifyQpToError(QpHandle qp) = 0;
  virtual Status DestroyQp(QpHandle qp) = 0;

  // Posts one signaled READ. An error return means it was not posted (no completion comes).
  virtual Status PostRead(QpHandle qp, const ReadRequest& wr) = 0;
  // Up to out.size() completions; 0 when none is ready. Never blocks.
  virtual StatusOr<size_t> PollCq(CqHandle cq, std::span<Completion> out) = 0;
  // Blocks until `cq` may hold completions or `timeout` passes; may return early.
  virtual Status WaitCq(CqHandle cq, std::chrono::milliseconds timeout) = 0;
};

}  // namespace tw::mesh::rdma
