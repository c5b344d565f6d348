// SoftFabric and SoftVerbs: RDMA verbs in software, for tests without a device.
//
// A SoftFabric is a network of "nodes" in one process; OpenDevice(node) gives that node a
// Verbs whose queue pairs, regions and completion queues live on the fabric. A READ moves
// bytes from a region registered on the remote node into one registered on the local node,
// with the rules of the real thing (verbs.h): the queue-pair state machine (posting before RTS
// fails), local and remote key, bounds and access checks (a remote access error completes with
// that status and moves both queue pairs to ERR), ERR flushing outstanding and later work, RC
// completion order, completions delivered on the queue pair's completion queue. A READ runs
// when it is posted, unless a fault holds it or the remote queue pair is not ready to respond
// yet (RESET or INIT: the hardware would retry; the READ runs when that one reaches RTR, and
// fails with kRetryExceeded if it goes to ERR or is destroyed instead).
//
// Faults, per node: kStall holds every READ the node posts or is the target of (none
// completes) until the fault is cleared, when the held READs of queue pairs still in RTS run
// and those of queue pairs that went to ERR meanwhile have already been flushed (never run);
// kDead removes the node: its queue pairs and regions vanish (their held work never completes),
// READs aimed at it complete with kRetryExceeded and move their queue pair to ERR.
//
// Threading: everything may be called from any thread; one mutex guards the fabric.
// Lifetime: the fabric outlives the devices it opened.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tw/mesh/rdma/verbs.h"

namespace tw::mesh::rdma {

class SoftFabric {
 public:
  enum class Fault : uint8_t {
    kNone = 0,   // READs run when posted
    kStall = 1,  // READs to or from the node are held, never completing, until cleared
    kDead = 2,   // the node is gone: READs aimed at it fail with kRetryExceeded
  };

  SoftFabric();
  ~SoftFabric();

  // A device port for `node` (created on first use; a dead node stays dead).
  std::unique_ptr<Verbs> OpenDevice(const std::string& node);
  void SetFault(const std::string& node, Fault fault);

  struct NodeCounters {
    uint64_t qps_created = 0;
    uint64_t qps_live = 0;
    uint64_t reads_posted = 0;    // READs posted by the node's queue pairs
    uint64_t reads_executed = 0;  // of which bytes moved
    uint64_t bytes_read = 0;
    uint64_t reads_held = 0;  // now held by a stall
  };
  NodeCounters counters(const std::string& node) const;

  struct State;  // the fabric's private state (soft_verbs.cc)

 private:
  std::shared_ptr<State> state_;
};

}  // namespace tw::mesh::rdma
