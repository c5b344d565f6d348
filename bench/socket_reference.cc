#include "socket_reference.h"

#include <dirent.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "buffer.h"

namespace tw::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
double Gbps(uint64_t bytes, double s) { return s > 0 ? static_cast<double>(bytes) / s / 1e9 : 0; }

}  // namespace

Placement::Placement(bool pin) {
  CPU_ZERO(&all_);
  CPU_ZERO(&near_);
  CPU_ZERO(&far_);
  if (!pin || sched_getaffinity(0, sizeof all_, &all_) != 0) return;
  int first = -1;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &all_)) continue;
    if (first < 0) {
      first = c;
    } else {
      CPU_SET(c, &far_);
    }
  }
  if (first < 0 || CPU_COUNT(&far_) == 0) return;
  CPU_SET(first, &near_);
  pinned_ = true;
}

void Placement::Set(pid_t tid, const cpu_set_t& set) const {
  if (pinned_) sched_setaffinity(tid, sizeof set, &set);
}

void Placement::ForEachThread(pid_t pid, const cpu_set_t& set) const {
  if (!pinned_ || pid <= 0) return;
  DIR* d = opendir(("/proc/" + std::to_string(pid) + "/task").c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') Set(static_cast<pid_t>(std::atol(e->d_name)), set);
  }
  closedir(d);
}

uint64_t ProcessCpuNs(pid_t pid) {
  const std::string dir =
      "/proc/" + (pid > 0 ? std::to_string(pid) : std::string("self")) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return 0;
  uint64_t total = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    FILE* f = std::fopen((dir + "/" + e->d_name + "/schedstat").c_str(), "r");
    if (!f) continue;
    unsigned long long ns = 0;
    if (std::fscanf(f, "%llu", &ns) == 1) total += ns;
    std::fclose(f);
  }
  closedir(d);
  return total;
}

double SocketStreamGbps(uint64_t chunk, int passes) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    Buffer src(chunk);
    for (int i = 0; i < passes; ++i) {
      uint64_t done = 0;
      while (done < chunk) {
        ssize_t n = write(sv[1], src.data() + done, chunk - done);
        if (n <= 0) _exit(1);
        done += static_cast<uint64_t>(n);
      }
    }
    _exit(0);
  }
  close(sv[1]);
  Buffer dst(chunk);
  uint64_t total = chunk * static_cast<uint64_t>(passes), got = 0;
  auto t0 = Clock::now();
  while (got < total) {
    uint64_t off = got % chunk;
    ssize_t n = read(sv[0], dst.data() + off, chunk - off);
    if (n <= 0) break;
    got += static_cast<uint64_t>(n);
  }
  double s = Seconds(t0, Clock::now());
  close(sv[0]);
  waitpid(pid, nullptr, 0);
  return Gbps(got, s);
}

PingPong PingPongUs(int rounds, const Placement& where) {
  int sv[2];
  PingPong r;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return r;
  pid_t pid = fork();
  if (pid == 0) {
    where.PinSelfFar();
    close(sv[0]);
    char b[64];
    while (read(sv[1], b, sizeof b) == sizeof b) {
      if (write(sv[1], b, sizeof b) != sizeof b) break;
    }
    _exit(0);
  }
  close(sv[1]);
  where.PinSelf();
  char b[64] = {};
  const uint64_t near0 = ProcessCpuNs(0), far0 = ProcessCpuNs(pid);
  for (int i = 0; i < rounds; ++i) {
    auto t0 = Clock::now();
    if (write(sv[0], b, sizeof b) != sizeof b || read(sv[0], b, sizeof b) != sizeof b) break;
    r.latency_us.push_back(Seconds(t0, Clock::now()) * 1e6);
  }
  const double n = std::max<double>(1, r.latency_us.size()) * 1e3;
  r.cpu_near_us = double(ProcessCpuNs(0) - near0) / n;
  r.cpu_far_us = double(ProcessCpuNs(pid) - far0) / n;
  where.UnpinSelf();
  close(sv[0]);
  waitpid(pid, nullptr, 0);
  return r;
}

}  // namespace tw::bench
