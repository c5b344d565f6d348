#include "tw/gpu/transfer_queue.h"

#include <algorithm>
#include <utility>

#include "fmt/format.h"

namespace tw::gpu {

std::string_view ToString(TransferClass c) {
  switch (c) {
    case TransferClass::kLoad:
      return "load";
    case TransferClass::kSave:
      return "save";
  }
  return "unknown";
}

Status TransferQueueOptions::Validate() const {
  if (piece_bytes == 0) return InvalidArgumentError("transfer queue: piece_bytes must be > 0");
  if (max_in_flight == 0) return InvalidArgumentError("transfer queue: max_in_flight must be > 0");
  if (scheduler.loads_per_save == 0) {
    return InvalidArgumentError("transfer queue: loads_per_save must be > 0");
  }
  if (!now) return InvalidArgumentError("transfer queue: no clock");
  return OkStatus();
}

StatusOr<std::unique_ptr<TransferQueue>> TransferQueue::Create(Backend& backend,
                                                               TransferQueueOptions options) {
  TW_RETURN_IF_ERROR(options.Validate());
  TW_ASSIGN_OR_RETURN(Stream stream, backend.CreateStream());
  const bool paused = options.start_paused;
  std::unique_ptr<TransferQueue> q(new TransferQueue(backend, std::move(options), stream));
  q->worker_ = std::thread([raw = q.get()] { raw->Run(); });
  if (!paused) q->Start();
  return q;
}

TransferQueue::TransferQueue(Backend& backend, TransferQueueOptions options, Stream stream)
    : backend_(backend), options_(std::move(options)), stream_(stream) {}

TransferQueue::~TransferQueue() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    started_ = true;
  }
  cv_.notify_all();
  worker_.join();
  for (Event e : free_events_) backend_.DestroyEvent(e).IgnoreError();  // teardown
  backend_.DestroyStream(stream_).IgnoreError();
}

void TransferQueue::Start() {
  {
    std::lock_guard lock(mu_);
    started_ = true;
  }
  cv_.notify_all();
}

StatusOr<std::uint64_t> TransferQueue::Submit(TransferJob job) {
  if (job.copies.empty()) return InvalidArgumentError("transfer job: no copies");
  for (std::size_t i = 0; i < job.copies.size(); ++i) {
    const TransferCopy& c = job.copies[i];
    if (c.dst == nullptr || c.src == nullptr || c.bytes == 0) {
      return InvalidArgumentError(fmt::format("transfer job: copy {} is empty or null", i));
    }
  }
  if (!job.done) return InvalidArgumentError("transfer job: no callback");
  std::uint64_t id;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return CancelledError("transfer queue: shutting down");
    id = next_id_++;
    auto j = std::make_shared<Job>(Job{.id = id, .job = std::move(job)});
    (j->job.kind == TransferClass::kLoad ? loads_ : saves_).push_back(std::move(j));
  }
  cv_.notify_all();
  return id;
}

std::size_t TransferQueue::CancelOwner(std::uint64_t owner) {
  std::vector<std::shared_ptr<Job>> unstarted;
  std::unique_lock lock(mu_);
  std::size_t cancelled = 0;
  for (auto* dq : {&loads_, &saves_}) {
    for (auto it = dq->begin(); it != dq->end();) {
      const std::shared_ptr<Job>& j = *it;
      if (j->job.owner != owner) {
        ++it;
        continue;
      }
      ++cancelled;
      if (j->status.ok()) j->status = CancelledError("transfer cancelled: its owner went away");
      j->issued_all = true;  // no more pieces; the worker finishes it when its pieces are done
      if (j->in_flight == 0) unstarted.push_back(j);
      it = dq->erase(it);
    }
  }
  lock.unlock();
  for (auto& j : unstarted) Finish(j);
  lock.lock();
  cv_.wait(lock, [&] {
    return std::none_of(in_flight_.begin(), in_flight_.end(),
                        [&](const Piece& p) { return p.job->job.owner == owner; });
  });
  return cancelled;
}

TransferQueueStats TransferQueue::Stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

std::shared_ptr<TransferQueue::Job> TransferQueue::PickLocked(
    std::vector<std::shared_ptr<Job>>* expired) {
  for (;;) {
    const bool loads = !loads_.empty(), saves = !saves_.empty();
    if (!loads && !saves) return nullptr;
    const TransferClass next = options_.scheduler.Next(loads, saves, loads_since_save_);
    auto& dq = next == TransferClass::kLoad ? loads_ : saves_;
    std::shared_ptr<Job> job = dq.front();
    if (!job->started && options_.now() >= job->job.deadline) {
      dq.pop_front();
      job->status = DeadlineExceededError("transfer: deadline passed before it started");
      job->issued_all = true;
      expired->push_back(std::move(job));
      continue;
    }
    if (next == TransferClass::kLoad) {
      if (saves) ++loads_since_save_;
    } else {
      loads_since_save_ = 0;
    }
    return job;
  }
}

Status TransferQueue::Issue(Job& job, std::uint64_t* bytes) {
  const TransferCopy& c = job.job.copies[job.next_copy];
  const std::uint64_t len = std::min(options_.piece_bytes, c.bytes - job.next_offset);
  const CopyKind kind =
      job.job.kind == TransferClass::kLoad ? CopyKind::kHostToDevice : CopyKind::kDeviceToHost;
  job.started = true;
  TW_RETURN_IF_ERROR(backend_.CopyAsync(static_cast<char*>(c.dst) + job.next_offset,
                                        static_cast<const char*>(c.src) + job.next_offset, len,
                                        kind, stream_));
  *bytes = len;
  job.next_offset += len;
  if (job.next_offset == c.bytes) {
    ++job.next_copy;
    job.next_offset = 0;
  }
  if (job.next_copy == job.job.copies.size()) job.issued_all = true;
  return OkStatus();
}

void TransferQueue::Finish(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard lock(mu_);
    const Status& s = job->status;
    if (s.ok()) {
      ++(job->job.kind == TransferClass::kLoad ? stats_.loads_done : stats_.saves_done);
    } else if (s.code() == StatusCode::kCancelled) {
      ++stats_.cancelled;
    } else if (s.code() == StatusCode::kDeadlineExceeded && !job->started) {
      ++stats_.expired;
    } else {
      ++stats_.failed;
    }
  }
  job->job.done(job->status);
  cv_.notify_all();
}

void TransferQueue::Run() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return started_; });
  std::vector<std::shared_ptr<Job>> finished;
  for (;;) {
    if (stopping_) {  // fail what waits; what is in flight drains below
      for (auto* dq : {&loads_, &saves_}) {
        for (auto& j : *dq) {
          if (j->status.ok()) j->status = CancelledError("transfer queue: shutting down");
          j->issued_all = true;
          if (j->in_flight == 0) finished.push_back(j);
        }
        dq->clear();
      }
    }
    while (!stopping_ && in_flight_.size() < options_.max_in_flight) {
      std::shared_ptr<Job> job = PickLocked(&finished);
      if (job == nullptr) break;
      std::uint64_t bytes = 0;
      Status s = Issue(*job, &bytes);
      Event event{};
      if (s.ok()) {
        if (free_events_.empty()) {
          auto e = backend_.CreateEvent();
          s = e.status();
          if (e.ok()) event = *e;
        } else {
          event = free_events_.back();
          free_events_.pop_back();
        }
      }
      if (s.ok()) s = backend_.RecordEvent(event, stream_);
      if (!s.ok()) {  // nothing more of this job goes; it ends once its pieces are done
        if (event != Event{}) free_events_.push_back(event);
        if (job->status.ok()) job->status = s;
        job->issued_all = true;
      } else {
        ++job->in_flight;
        ++stats_.pieces;
        stats_.bytes += bytes;
        in_flight_.push_back({job, event, stream_generation_});
        if (options_.on_issue) options_.on_issue(job->id, job->job.kind);
      }
      if (job->issued_all) {
        auto& dq = job->job.kind == TransferClass::kLoad ? loads_ : saves_;
        dq.erase(std::find(dq.begin(), dq.end(), job));
        if (job->in_flight == 0) finished.push_back(job);
      }
    }
    if (!finished.empty()) {
      lock.unlock();
      for (auto& j : finished) Finish(j);
      finished.clear();
      lock.lock();
      continue;
    }
    if (in_flight_.empty()) {
      if (stopping_) return;
      cv_.wait(lock, [&] { return stopping_ || !loads_.empty() || !saves_.empty(); });
      continue;
    }
    Piece p = in_flight_.front();
    lock.unlock();
    Status s = backend_.SynchronizeEvent(p.event);
    lock.lock();
    in_flight_.pop_front();
    free_events_.push_back(p.event);
    --p.job->in_flight;
    if (!s.ok()) {
      if (p.job->status.ok()) p.job->status = s;
      if (!p.job->issued_all) {
        p.job->issued_all = true;
        auto& dq = p.job->job.kind == TransferClass::kLoad ? loads_ : saves_;
        dq.erase(std::find(dq.begin(), dq.end(), p.job));
      }
      if (p.generation == stream_generation_) {         // errors are sticky: a fresh stream
        backend_.DestroyStream(stream_).IgnoreError();  // its queued work still drains
        auto fresh = backend_.CreateStream();
        if (fresh.ok()) stream_ = *fresh;
        ++stream_generation_;
      }
    }
    if (p.job->in_flight == 0 && p.job->issued_all) finished.push_back(p.job);
    cv_.notify_all();  // CancelOwner waits for pieces to leave in_flight_
  }
}

}  // namespace tw::gpu
