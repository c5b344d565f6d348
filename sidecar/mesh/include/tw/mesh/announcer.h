// Announcer: turns a node's stream of "I now hold key K" / "I no longer hold key K" into
// per-home batches (UpdateBatch) handed to a sender, off the put's critical path.
//
// Announce() and Withdraw() place the key (placement.h), take one mutex for a vector push and
// return: no I/O, no allocation beyond the queue's growth, no call out. Batches are cut by
// Tick(): a home's queue is flushed when it holds `max_batch` updates or its oldest update has
// waited `max_delay`. Tick() runs on the caller's thread (tests, with an injected clock) or on
// the announcer's own thread after Start(), which ticks every max_delay and as soon as a queue
// reaches max_batch. The sender is called with no lock held; it is where the peer service's
// client will send the batch (to this node itself too, when a key's home is local: the caller
// decides what sending to itself means).
//
// Bounded memory: each home's queue holds at most `max_queue_per_home` updates; beyond that
// updates are dropped and counted (a dead or slow home must not grow our memory). A dropped
// announce costs remote hits until the key is re-announced; a dropped withdraw costs one wasted
// fetch; neither costs wrong bytes.
//
// Membership changes: SetPlacement() re-places every queued update on the new placement (a
// queue for a node that left would never drain). Keys already sent are the business of
// PlanReannounce() (rehome.h), whose result the caller feeds to Announce().
//
// Threading: Announce(), Withdraw(), SetPlacement(), Tick(), Flush() and GetStats() may be
// called from any thread; the sender is called from whichever thread ticks, one call at a time
// (ticks are serialised). Lifetime: Stop() (or the destructor) flushes what is queued, then
// joins the thread; the sender must stay callable until then.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "tw/common/keys.h"
#include "tw/common/status.h"
#include "tw/mesh/mesh_types.h"
#include "tw/mesh/placement.h"

namespace tw::mesh {

class Announcer {
 public:
  // Called with the home node's name and a batch of at most max_batch updates.
  using Sender = std::function<void(const std::string& home, UpdateBatch batch)>;

  struct Options {
    // This node's name (UpdateBatch::from_node).
    std::string self;
    // Most updates in one batch; a queue this long is flushed at the next tick.
    size_t max_batch = 1024;
    // Longest an update waits in a queue before its batch is sent.
    std::chrono::nanoseconds max_delay = std::chrono::milliseconds(50);
    // Most updates queued for one home; more are dropped and counted.
    size_t max_queue_per_home = size_t{1} << 16;
    // The announcer's clock.
    NowFn now = Clock::now;

    // INVALID_ARGUMENT naming the field (self empty, a bound 0, max_queue_per_home <
    // max_batch, max_delay not positive).
    Status Validate() const;
  };

  struct Stats {
    uint64_t enqueued = 0;         // updates accepted
    uint64_t dropped_full = 0;     // updates dropped: their home's queue was full
    uint64_t dropped_no_home = 0;  // updates dropped: the placement has no members
    uint64_t batches_sent = 0;     // sender calls
    uint64_t updates_sent = 0;     // updates in those batches
    uint64_t queued = 0;           // updates waiting now
  };

  // REQUIRES: options.Validate() is OK; placement may be empty (then updates are dropped
  // until SetPlacement()).
  Announcer(Options options, std::shared_ptr<const Placement> placement, Sender sender);
  ~Announcer();
  Announcer(const Announcer&) = delete;
  Announcer& operator=(const Announcer&) = delete;

  void Announce(const Key& key) { Enqueue({key, UpdateKind::kAnnounce}); }
  void Withdraw(const Key& key) { Enqueue({key, UpdateKind::kWithdraw}); }

  // Re-places queued updates on `placement`, in their order. Updates that overflow their new
  // home's queue are dropped and counted.
  void SetPlacement(std::shared_ptr<const Placement> placement);

  // Sends every batch that is due (full, or its oldest update waited max_delay).
  void Tick();
  // Sends everything queued, due or not.
  void Flush();

  Stats GetStats() const;

  // Starts the ticking thread. REQUIRES: not started.
  void Start();
  // Stops the thread (if started) and flushes what is queued. Idempotent.
  void Stop();

 private:
  struct Pending {
    Update update;
    Clock::time_point enqueued;
  };
  using Queue = std::vector<Pending>;  // oldest first

  void Enqueue(const Update& update);
  // Appends to `home`'s queue; false (and counted) when it is full.
  bool PushLocked(const std::string& home, const Pending& pending);
  void Send(bool all);
  void RunLoop();

  const Options options_;
  const Sender sender_;

  std::mutex send_mu_;  // serialises Tick() and Flush(), so the sender sees one call at a time

  mutable std::mutex mu_;
  std::shared_ptr<const Placement> placement_;      // GUARDED_BY(mu_)
  absl::flat_hash_map<std::string, Queue> queues_;  // GUARDED_BY(mu_)
  Stats stats_;                                     // GUARDED_BY(mu_)
  bool full_queue_ = false;  // GUARDED_BY(mu_): a queue reached max_batch since the last tick
  bool stop_ = false;        // GUARDED_BY(mu_)
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace tw::mesh
