// Private state of RdmaTransport shared by its source files (rdma_transport.cc: setup, links,
// completions; rdma_fetch.cc: the requester's fetch and the holder's grants).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "tw/mesh/rdma/rdma_transport.h"

namespace tw::mesh::rdma {

// One queue pair. Outlives its link's use of it until all its work has completed.
struct RdmaTransport::QpSlot {
  QpHandle handle;
  uint32_t qpn = 0;
  uint32_t psn = 0;
  uint32_t outstanding = 0;  // posted, not yet completed; GUARDED_BY(link mutex)
  bool retiring = false;     // in ERR; destroyed once outstanding reaches 0
  bool destroyed = false;
};

enum class LinkState : uint8_t {
  kIdle = 0,        // no queue pair
  kConnecting = 1,  // one caller is building the connection; others wait
  kUp = 2,          // connected: READs may be posted
  kDown = 3,        // failed; fetches fail fast until down_until
};

struct RdmaTransport::Link {
  explicit Link(std::string n) : node(std::move(n)) {}
  const std::string node;
  std::mutex mu;
  std::condition_variable cv;  // state changes and window space
  LinkState state = LinkState::kIdle;
  std::shared_ptr<QpSlot> qp;   // the current queue pair (kUp; or set by HandleConnect)
  uint32_t remote_qpn = 0;      // the peer's queue pair of the current (or last) connection
  uint32_t connecting_qpn = 0;  // our queue pair while we build the connection (Connect sent)
  uint32_t consecutive_failures = 0;
  Clock::time_point down_until{};  // on options.now's clock
  // Statistics (LinkStats).
  uint64_t fetches = 0;
  uint64_t failures = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  std::string last_error;
};

// One fetch's READs.
struct RdmaTransport::Transfer {
  std::mutex mu;
  std::condition_variable cv;
  uint32_t outstanding = 0;  // GUARDED_BY(mu)
  bool failed = false;       // GUARDED_BY(mu)
  WcStatus first_error = WcStatus::kSuccess;
};

struct RdmaTransport::WrRef {
  std::shared_ptr<Link> link;
  std::shared_ptr<QpSlot> qp;
  std::shared_ptr<Transfer> transfer;
};

// A holder's staged chunk, readable by one peer until released or expired.
struct RdmaTransport::Grant {
  StagingRing::Extent extent;
  Clock::time_point expires;  // on options.now's clock
};

}  // namespace tw::mesh::rdma
