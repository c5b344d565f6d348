// Child processes for the daemon tests: spawn a binary with arguments and extra
// environment, send it signals, wait for it (with a generous hang guard).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace tw::twd::testing {

class Process {
 public:
  // Starts `argv[0]` with stdout/stderr appended to `log_path`.
  static Process Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                       const std::string& log_path);
  ~Process();
  Process(Process&& o) noexcept : pid_(o.pid_) { o.pid_ = -1; }
  Process(const Process&) = delete;

  void Signal(int sig);
  // The exit code (128 + signal when killed), or nullopt if it did not exit within `guard`
  // (then it is killed).
  std::optional<int> Wait(std::chrono::seconds guard = std::chrono::seconds(60));
  pid_t pid() const { return pid_; }

 private:
  explicit Process(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
};

// Polls `pred` every 10 ms until true or `guard` passes (a hang guard, not a timing check).
template <typename F>
bool WaitFor(F pred, std::chrono::seconds guard = std::chrono::seconds(30)) {
  const auto end = std::chrono::steady_clock::now() + guard;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
  return pred();
}

bool FileExists(const std::string& path);
std::string ReadFile(const std::string& path);

}  // namespace tw::twd::testing
