// PeersWatcher: keeps the mesh's membership in step with the peers file and publishes each
// change as an immutable snapshot (shared_ptr<const Membership>) with a new version number.
//
// Kubernetes updates a ConfigMap directory by writing a new timestamped directory and swapping
// the `..data` symlink; the file's path (`<dir>/peers.json` → `..data/peers.json`) stays the
// same while the file behind it is replaced. So the watcher never holds the file open and
// never watches one inode: each Poll() opens the path afresh (following the symlinks) and
// compares the content with the last content it read. The file is small (about 60 bytes
// a peer), so reading it once a poll interval costs nothing worth an inotify watch, and works
// the same for a hand-written file replaced by rename or edited in place.
//
// A file that is missing or does not parse keeps the last good membership (a half-written or
// broken file must not empty the mesh); the error is counted and kept for Stats().
// A content change that parses to the same peers (whitespace, order) publishes nothing.
//
// Threading: Poll() may be called from any thread; calls are serialised. Subscribers are
// called on the polling thread, one change at a time and in version order, with no lock of the
// watcher's held except the one that serialises polls: a subscriber must not call Poll(),
// Start() or Stop(). Current(), Subscribe() and Stats() may be called from any thread,
// including from a subscriber. Start() runs Poll() every poll_interval on a thread of the
// watcher's until Stop() (or destruction). Lifetime: subscribers must outlive the watcher or
// be unsubscribed first.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tw/common/status.h"
#include "tw/mesh/membership.h"

namespace tw::mesh {

class PeersWatcher {
 public:
  using Snapshot = std::shared_ptr<const Membership>;
  using Subscriber = std::function<void(const Snapshot&)>;

  struct Options {
    // The peers file (in a ConfigMap directory: `<mount>/peers.json`).
    std::string path;
    // How often the Start() thread polls. Real time: the thread waits on a condition variable.
    std::chrono::milliseconds poll_interval{1000};
  };

  struct Stats {
    uint64_t version = 0;  // version of the current snapshot
    uint64_t polls = 0;    // Poll() calls
    uint64_t changes = 0;  // snapshots published
    uint64_t errors = 0;   // polls that found the file missing or invalid
    Status last_error;     // the last poll's error (OK once a poll succeeds)
  };

  explicit PeersWatcher(Options options);
  ~PeersWatcher();
  PeersWatcher(const PeersWatcher&) = delete;
  PeersWatcher& operator=(const PeersWatcher&) = delete;

  // Reads the file; publishes a new snapshot if its peers changed. Returns the read or parse
  // error (the current snapshot stays), or OK (changed or not).
  Status Poll();

  // The current snapshot: version 0 and no peers until a poll succeeds. Never null.
  Snapshot Current() const;

  // Adds a subscriber, called on each later change; returns an id for Unsubscribe().
  uint64_t Subscribe(Subscriber subscriber);
  // Removes a subscriber. A call that a poll already under way has begun may still run.
  void Unsubscribe(uint64_t id);

  Stats GetStats() const;

  // Polls once on the caller's thread, then every poll_interval on a thread of the watcher's.
  // Returns the first poll's status (the thread runs either way: the file may appear later).
  // REQUIRES: not started.
  Status Start();
  // Stops the polling thread and waits for it. Idempotent.
  void Stop();

 private:
  void RunLoop();

  const Options options_;

  std::mutex poll_mu_;         // serialises Poll(); held while subscribers run
  std::string last_content_;   // GUARDED_BY(poll_mu_)
  bool have_content_ = false;  // GUARDED_BY(poll_mu_)

  mutable std::mutex mu_;
  Snapshot current_;                                          // GUARDED_BY(mu_)
  std::vector<std::pair<uint64_t, Subscriber>> subscribers_;  // GUARDED_BY(mu_)
  uint64_t next_subscriber_id_ = 1;                           // GUARDED_BY(mu_)
  Stats stats_;                                               // GUARDED_BY(mu_)

  std::mutex thread_mu_;
  std::condition_variable thread_cv_;
  bool stop_ = false;  // GUARDED_BY(thread_mu_)
  std::thread thread_;
};

}  // namespace tw::mesh
