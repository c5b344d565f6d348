#include "tw/mesh/announcer.h"

#include <algorithm>
#include <utility>

namespace tw::mesh {

Status Announcer::Options::Validate() const {
  if (self.empty()) return InvalidArgumentError("announcer.self: must not be empty");
  if (max_batch == 0) return InvalidArgumentError("announcer.max_batch: must be > 0");
  if (max_queue_per_home < max_batch) {
    return InvalidArgumentError("announcer.max_queue_per_home: must be >= max_batch");
  }
  if (max_delay <= std::chrono::nanoseconds::zero()) {
    return InvalidArgumentError("announcer.max_delay: must be > 0");
  }
  if (!now) return InvalidArgumentError("announcer.now: must be set");
  return OkStatus();
}

Announcer::Announcer(Options options, std::shared_ptr<const Placement> placement, Sender sender)
    : options_(std::move(options)), sender_(std::move(sender)), placement_(std::move(placement)) {}

Announcer::~Announcer() { Stop(); }

void Announcer::Enqueue(const Update& update) {
  // Place the key outside the lock (the only work proportional to the membership's size).
  std::shared_ptr<const Placement> placement;
  {
    std::lock_guard<std::mutex> l(mu_);
    placement = placement_;
  }
  const std::string* home = nullptr;
  if (placement && placement->size() > 0) home = &placement->Home(update.key);
  bool wake = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    // Read under the lock, so enqueue times follow queue order (SetPlacement() merges by them).
    const Clock::time_point now = options_.now();
    if (placement_ != placement) {
      // SetPlacement() ran meanwhile (rare): place again, under the lock, on the new one.
      placement = placement_;
      home = (placement && placement->size() > 0) ? &placement->Home(update.key) : nullptr;
    }
    if (home == nullptr) {
      ++stats_.dropped_no_home;
      return;
    }
    if (PushLocked(*home, {update, now})) ++stats_.enqueued;
    wake = full_queue_;
  }
  if (wake) cv_.notify_one();
}

bool Announcer::PushLocked(const std::string& home, const Pending& pending) {
  Queue& q = queues_[home];
  if (q.size() >= options_.max_queue_per_home) {
    ++stats_.dropped_full;
    return false;
  }
  q.push_back(pending);
  ++stats_.queued;
  if (q.size() >= options_.max_batch) full_queue_ = true;
  return true;
}

void Announcer::SetPlacement(std::shared_ptr<const Placement> placement) {
  std::lock_guard<std::mutex> l(mu_);
  placement_ = std::move(placement);
  absl::flat_hash_map<std::string, Queue> old = std::move(queues_);
  queues_.clear();
  stats_.queued = 0;
  // Each home's queue is in enqueue order; merged queues may interleave two old homes' updates,
  // which is harmless: updates of one key always went to one home, so their order is kept.
  for (auto& [home, q] : old) {
    for (const Pending& p : q) {
      if (!placement_ || placement_->size() == 0) {
        ++stats_.dropped_no_home;
        continue;
      }
      PushLocked(placement_->Home(p.update.key), p);
    }
  }
  for (auto& [home, q] : queues_) {
    std::stable_sort(q.begin(), q.end(),
                     [](const Pending& a, const Pending& b) { return a.enqueued < b.enqueued; });
  }
}

void Announcer::Tick() { Send(/*all=*/false); }
void Announcer::Flush() { Send(/*all=*/true); }

void Announcer::Send(bool all) {
  std::lock_guard<std::mutex> send_lock(send_mu_);
  const Clock::time_point now = options_.now();
  std::vector<std::pair<std::string, UpdateBatch>> batches;
  {
    std::lock_guard<std::mutex> l(mu_);
    full_queue_ = false;
    for (auto it = queues_.begin(); it != queues_.end();) {
      Queue& q = it->second;
      size_t cut = 0;  // updates taken from the front of q
      while (cut < q.size()) {
        const size_t left = q.size() - cut;
        const bool due =
            all || left >= options_.max_batch || now - q[cut].enqueued >= options_.max_delay;
        if (!due) break;
        const size_t n = std::min(left, options_.max_batch);
        UpdateBatch batch;
        batch.from_node = options_.self;
        batch.updates.reserve(n);
        for (size_t i = cut; i < cut + n; ++i) batch.updates.push_back(q[i].update);
        cut += n;
        batches.emplace_back(it->first, std::move(batch));
      }
      q.erase(q.begin(), q.begin() + static_cast<ptrdiff_t>(cut));
      stats_.queued -= cut;
      if (q.empty()) {
        // An empty queue's vector keeps no memory for a home that may never come back.
        auto victim = it++;
        queues_.erase(victim);
      } else {
        ++it;
      }
    }
  }
  for (auto& [home, batch] : batches) {
    const size_t n = batch.updates.size();
    sender_(home, std::move(batch));
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.batches_sent;
    stats_.updates_sent += n;
  }
}

Announcer::Stats Announcer::GetStats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

void Announcer::Start() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { RunLoop(); });
}

void Announcer::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  Flush();
}

void Announcer::RunLoop() {
  // Real time here: this thread only decides when to look; Tick() decides what is due by the
  // injected clock.
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    cv_.wait_for(l, options_.max_delay, [this] { return stop_ || full_queue_; });
    if (stop_) break;
    l.unlock();
    Tick();
    l.lock();
  }
}

}  // namespace tw::mesh
