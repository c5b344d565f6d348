#include "tw/mesh/peers_watcher.h"

#include <cerrno>
#include <fstream>
#include <sstream>
#include <utility>

namespace tw::mesh {
namespace {

StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoStatus(errno, "open peers file " + path);
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return InternalError("read peers file " + path);
  return out.str();
}

std::shared_ptr<const Membership> EmptyMembership() {
  auto empty = Membership::Create({}, 0);
  return std::make_shared<const Membership>(std::move(empty).value());
}

}  // namespace

PeersWatcher::PeersWatcher(Options options)
    : options_(std::move(options)), current_(EmptyMembership()) {}

PeersWatcher::~PeersWatcher() { Stop(); }

Status PeersWatcher::Poll() {
  std::lock_guard<std::mutex> poll_lock(poll_mu_);
  auto fail = [&](Status s) {
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.polls;
    ++stats_.errors;
    stats_.last_error = s;
    return s;
  };
  StatusOr<std::string> content = ReadWholeFile(options_.path);
  if (!content.ok()) return fail(content.status());
  if (have_content_ && *content == last_content_) {
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.polls;
    stats_.last_error = OkStatus();
    return OkStatus();
  }
  StatusOr<std::vector<Peer>> peers = ParsePeersJson(*content);
  if (!peers.ok()) return fail(peers.status().WithPrefix(options_.path));
  // Only a file that parsed is remembered: a broken file read again later is an error again.
  last_content_ = *std::move(content);
  have_content_ = true;

  Snapshot previous = Current();
  StatusOr<Membership> next = Membership::Create(*std::move(peers), previous->version() + 1);
  if (!next.ok()) return fail(next.status().WithPrefix(options_.path));
  std::vector<Subscriber> to_call;
  Snapshot snapshot;
  {
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.polls;
    stats_.last_error = OkStatus();
    if (next->SamePeers(*current_)) return OkStatus();
    snapshot = std::make_shared<const Membership>(*std::move(next));
    current_ = snapshot;
    ++stats_.changes;
    stats_.version = snapshot->version();
    for (const auto& [id, s] : subscribers_) to_call.push_back(s);
  }
  for (const Subscriber& s : to_call) s(snapshot);
  return OkStatus();
}

PeersWatcher::Snapshot PeersWatcher::Current() const {
  std::lock_guard<std::mutex> l(mu_);
  return current_;
}

uint64_t PeersWatcher::Subscribe(Subscriber subscriber) {
  std::lock_guard<std::mutex> l(mu_);
  uint64_t id = next_subscriber_id_++;
  subscribers_.emplace_back(id, std::move(subscriber));
  return id;
}

void PeersWatcher::Unsubscribe(uint64_t id) {
  std::lock_guard<std::mutex> l(mu_);
  std::erase_if(subscribers_, [id](const auto& e) { return e.first == id; });
}

PeersWatcher::Stats PeersWatcher::GetStats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

Status PeersWatcher::Start() {
  Status first = Poll();
  {
    std::lock_guard<std::mutex> l(thread_mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { RunLoop(); });
  return first;
}

void PeersWatcher::Stop() {
  {
    std::lock_guard<std::mutex> l(thread_mu_);
    stop_ = true;
  }
  thread_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PeersWatcher::RunLoop() {
  std::unique_lock<std::mutex> l(thread_mu_);
  while (!thread_cv_.wait_for(l, options_.poll_interval, [this] { return stop_; })) {
    l.unlock();
    // An error is kept in the stats; the last good membership stays current.
    Poll().IgnoreError();
    l.lock();
  }
}

}  // namespace tw::mesh
