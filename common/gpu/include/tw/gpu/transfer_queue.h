// TransferQueue: one GPU's queue of copies between host memory (the DRAM tier, pinned) and
// device memory (registered client buffers), as twd runs it: loads (on the time-to-first-token
// path) go before saves, and saves never starve.
//
// A job is a list of copies (host → device for a load, device → host for a save) and a callback.
// The queue cuts jobs into pieces of at most `piece_bytes` and keeps at most `max_in_flight`
// pieces queued on its stream (2: one copying while the next is queued), so a load submitted
// while a long save runs waits for at most those pieces, not for the save. Which class goes next
// is TransferScheduler's decision (a pure function of the counts, unit-tested apart): a load when
// one waits, except that after `loads_per_save` load pieces issued while a save waited, one save
// piece goes.
//
// Deadlines: a job whose deadline has passed before its first piece is issued completes with
// DEADLINE_EXCEEDED and nothing is copied; once started a job runs to the end (its memory is in
// use by the DMA engine until then). CancelOwner fails the waiting jobs of an owner (a client
// that died) with CANCELLED and returns once none of its pieces is in flight: after it, the queue
// touches none of that owner's memory.
//
// Errors: a piece that fails (a bad range, a device error) fails its job; the stream is replaced
// (CUDA errors are sticky), and the jobs whose pieces were in flight with it fail too.
//
// Threading: Submit, CancelOwner and Stats may be called from any thread; one worker thread
// issues pieces and waits for them; callbacks run on it and must not call back into the queue's
// blocking calls. `mu_` guards the job lists and counters. Lifetime: the destructor fails the
// waiting jobs (CANCELLED), waits for the pieces in flight, and joins the worker; the backend
// must outlive the queue.
#ifndef TW_GPU_TRANSFER_QUEUE_H_
#define TW_GPU_TRANSFER_QUEUE_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "tw/gpu/backend.h"

namespace tw::gpu {

// The class of a job.
enum class TransferClass {
  kLoad,  // warehouse → GPU (someone waits for it: time to first token)
  kSave,  // GPU → warehouse (background)
};
std::string_view ToString(TransferClass c);

// Which class issues the next piece. Pure: the queue feeds it counts.
struct TransferScheduler {
  // Load pieces issued while a save waited before one save piece goes (>= 1).
  std::uint32_t loads_per_save = 8;
  // REQUIRES: loads_waiting or saves_waiting. `loads_since_save` counts load pieces issued while
  // a save was waiting since the last save piece.
  TransferClass Next(bool loads_waiting, bool saves_waiting, std::uint32_t loads_since_save) const {
    if (!saves_waiting) return TransferClass::kLoad;
    if (!loads_waiting) return TransferClass::kSave;
    return loads_since_save >= loads_per_save ? TransferClass::kSave : TransferClass::kLoad;
  }
};

// One copy of a job.
struct TransferCopy {
  void* dst = nullptr;
  const void* src = nullptr;
  std::uint64_t bytes = 0;
};

struct TransferJob {
  TransferClass kind = TransferClass::kLoad;
  std::uint64_t owner = 0;  // the client it belongs to (CancelOwner)
  std::vector<TransferCopy> copies;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::function<void(Status)> done;  // called once, on the worker thread
};

struct TransferQueueOptions {
  std::uint64_t piece_bytes = std::uint64_t{4} << 20;  // most bytes per queued copy
  std::uint32_t max_in_flight = 2;                     // pieces queued on the stream at once
  TransferScheduler scheduler;
  // The clock deadlines are compared with (tests inject one).
  std::function<std::chrono::steady_clock::time_point()> now = std::chrono::steady_clock::now;
  // Test and metrics hook: called on the worker as each piece is issued (job id, its class).
  std::function<void(std::uint64_t job, TransferClass kind)> on_issue;
  // Start the worker only when Start() is called (tests queue jobs first).
  bool start_paused = false;

  Status Validate() const;
};

struct TransferQueueStats {
  std::uint64_t loads_done = 0, saves_done = 0, failed = 0, expired = 0, cancelled = 0;
  std::uint64_t pieces = 0, bytes = 0;
};

class TransferQueue {
 public:
  static StatusOr<std::unique_ptr<TransferQueue>> Create(Backend& backend,
                                                         TransferQueueOptions options);
  ~TransferQueue();

  // Queues a job; returns its id. INVALID_ARGUMENT for an empty job or a null pointer (the
  // callback is not called then).
  StatusOr<std::uint64_t> Submit(TransferJob job);
  // Fails `owner`'s waiting jobs (CANCELLED) and waits until none of its pieces is in flight.
  // Returns how many jobs were cancelled.
  std::size_t CancelOwner(std::uint64_t owner);
  void Start();
  TransferQueueStats Stats() const;

 private:
  struct Job {
    std::uint64_t id;
    TransferJob job;
    std::size_t next_copy = 0;      // the copy the next piece starts in
    std::uint64_t next_offset = 0;  // its offset within that copy
    std::uint32_t in_flight = 0;    // pieces queued, not yet complete
    bool started = false;           // a piece was issued
    bool issued_all = false;        // no more pieces will be issued (done, failed, cancelled)
    Status status;                  // the first error
  };
  struct Piece {
    std::shared_ptr<Job> job;
    Event event;
    std::uint64_t generation = 0;  // the stream it went to (stream_generation_ then)
  };

  TransferQueue(Backend& backend, TransferQueueOptions options, Stream stream);
  void Run();
  // The job whose piece goes next, or null when none waits; jobs found expired are moved to
  // `expired`. REQUIRES: mu_ held.
  std::shared_ptr<Job> PickLocked(std::vector<std::shared_ptr<Job>>* expired);
  // Queues the job's next piece on stream_. REQUIRES: mu_ held.
  Status Issue(Job& job, std::uint64_t* bytes);
  // Counts the job and calls its callback. REQUIRES: mu_ not held.
  void Finish(const std::shared_ptr<Job>& job);

  Backend& backend_;
  const TransferQueueOptions options_;
  // Job, piece and stream state below is guarded by mu_ (the worker issues under it).
  Stream stream_;
  std::uint64_t stream_generation_ = 0;
  std::vector<Event> free_events_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> loads_, saves_;  // guarded by mu_
  std::uint32_t loads_since_save_ = 0;              // guarded by mu_
  std::deque<Piece> in_flight_;                     // guarded by mu_
  std::uint64_t next_id_ = 1;                       // guarded by mu_
  TransferQueueStats stats_;                        // guarded by mu_
  bool stopping_ = false;                           // guarded by mu_
  bool started_ = false;                            // guarded by mu_
  std::thread worker_;
};

}  // namespace tw::gpu

#endif  // TW_GPU_TRANSFER_QUEUE_H_
