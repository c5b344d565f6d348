#include "netns_pair.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <thread>

#include "buffer.h"
#include "tw/common/strings.h"

namespace tw::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kPrefix[] = "twbench";

// Runs `ip args…`; an error names the command and its exit status.
Status Ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> c;
  for (auto& a : argv) c.push_back(a.data());
  c.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return ErrnoStatus(errno, "fork");
  if (pid == 0) {
    execvp("ip", c.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string cmd;
    for (auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    return UnavailableError(StrCat(cmd, ": failed (exit ", WEXITSTATUS(status), ")"));
  }
  return OkStatus();
}

// The namespaces to delete on SIGINT/SIGTERM, in storage a signal handler may read.
char g_names[2][64];

void DeleteNamespace(const char* name) {
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 2);
    execlp("ip", "ip", "netns", "del", name, static_cast<char*>(nullptr));
    _exit(127);
  }
  if (pid > 0) waitpid(pid, nullptr, 0);
}

void OnSignal(int sig) {
  for (const char* n : g_names) {
    if (n[0] != '\0') DeleteNamespace(n);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

// Deletes `twbench<pid>-…` namespaces whose process is gone, killing (by id) any process
// still inside them.
void RemoveLeftovers() {
  DIR* d = opendir("/run/netns");
  if (d == nullptr) return;
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind(kPrefix, 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + sizeof(kPrefix) - 1, nullptr, 16);
    if (pid > 0 && (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH)) continue;
    stale.push_back(name);
  }
  closedir(d);
  for (const std::string& name : stale) {
    std::string cmd = "ip netns pids " + name;
    if (FILE* f = popen(cmd.c_str(), "r")) {
      long pid;
      while (std::fscanf(f, "%ld", &pid) == 1) kill(static_cast<pid_t>(pid), SIGKILL);
      pclose(f);
    }
    Ip({"netns", "del", name}).IgnoreError();
  }
}

Status SendAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return ErrnoStatus(errno, "send");
    p += w;
    n -= static_cast<size_t>(w);
  }
  return OkStatus();
}

Status RecvAll(int fd, uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus(errno, "recv");
    if (r == 0) return UnavailableError("recv: connection closed");
    p += r;
    n -= static_cast<size_t>(r);
  }
  return OkStatus();
}

sockaddr_in Addr(const std::string& ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

// A listening socket on ip:0; returns it and its port.
StatusOr<std::pair<int, uint16_t>> Listen(const std::string& ip) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  sockaddr_in a = Addr(ip, 0);
  socklen_t len = sizeof a;
  // accept() and the reads give up after 30 s rather than hang when the other end failed.
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 4) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    Status s = ErrnoStatus(errno, "listen on " + ip);
    close(fd);
    return s;
  }
  return std::make_pair(fd, ntohs(a.sin_port));
}

StatusOr<int> ConnectTo(const std::string& ip, uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  sockaddr_in a = Addr(ip, port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    Status s = ErrnoStatus(errno, StrCat("connect to ", ip, ":", port));
    close(fd);
    return s;
  }
  return fd;
}

}  // namespace

StatusOr<std::unique_ptr<NetnsPair>> NetnsPair::Create() {
  if (geteuid() != 0) {
    return FailedPreconditionError("needs root (network namespaces and a veth pair)");
  }
  RemoveLeftovers();
  std::unique_ptr<NetnsPair> p(new NetnsPair());
  char run[32];
  std::snprintf(run, sizeof run, "%s%x", kPrefix, static_cast<unsigned>(getpid()));
  for (int end = 0; end < 2; ++end) {
    p->names_[end] = StrCat(run, "-", end == 0 ? "a" : "b");
    p->addresses_[end] = StrCat("10.88.0.", end + 1);
  }
  for (int end = 0; end < 2; ++end) {
    TW_RETURN_IF_ERROR(Ip({"netns", "add", p->names_[end]}));
    std::snprintf(g_names[end], sizeof g_names[end], "%s", p->names_[end].c_str());
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  TW_RETURN_IF_ERROR(Ip({"link", "add", "eth0", "netns", p->names_[0], "type", "veth", "peer",
                         "name", "eth0", "netns", p->names_[1]}));
  for (int end = 0; end < 2; ++end) {
    TW_RETURN_IF_ERROR(Ip({"-n", p->names_[end], "link", "set", "dev", "lo", "up"}));
    TW_RETURN_IF_ERROR(
        Ip({"-n", p->names_[end], "addr", "add", p->addresses_[end] + "/24", "dev", "eth0"}));
    TW_RETURN_IF_ERROR(Ip({"-n", p->names_[end], "link", "set", "dev", "eth0", "up"}));
  }
  return p;
}

NetnsPair::~NetnsPair() {
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  for (int end = 0; end < 2; ++end) {
    if (!names_[end].empty()) Ip({"netns", "del", names_[end]}).IgnoreError();
    g_names[end][0] = '\0';
  }
}

std::vector<std::string> NetnsPair::ExecPrefix(int end) const {
  // A path: Child::Start execs without searching PATH.
  std::string ip = "ip";
  for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"}) {
    if (access((std::string(dir) + "ip").c_str(), X_OK) == 0) {
      ip = std::string(dir) + "ip";
      break;
    }
  }
  return {ip, "netns", "exec", names_[end]};
}

StatusOr<std::thread> NetnsPair::StartIn(int end, std::function<void()> fn) const {
  const std::string path = "/run/netns/" + names_[end];
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open " + path);
  std::promise<Status> entered;
  std::future<Status> done = entered.get_future();
  // The thread owns the promise: this frame may be gone before set_value has returned.
  std::thread t([fd, entered = std::move(entered), fn = std::move(fn)]() mutable {
    // setns moves only this thread into the namespace.
    const bool ok = setns(fd, CLONE_NEWNET) == 0;
    Status s = ok ? OkStatus() : ErrnoStatus(errno, "setns");
    close(fd);
    entered.set_value(s);
    if (ok) fn();
  });
  Status s = done.get();
  if (!s.ok()) {
    t.join();
    return s;
  }
  return t;
}

Status NetnsPair::RunIn(int end, const std::function<void()>& fn) const {
  TW_ASSIGN_OR_RETURN(std::thread t, StartIn(end, fn));
  t.join();
  return OkStatus();
}

StatusOr<double> TcpStreamGbps(const NetnsPair& net, uint64_t chunk, int count) {
  Buffer src(chunk), dst(chunk);
  if (src.data() == nullptr || dst.data() == nullptr) return ResourceExhaustedError("mmap");
  std::promise<StatusOr<uint16_t>> port_p;
  auto port_f = port_p.get_future();
  Status recv_status, send_status;
  Clock::time_point t0, t1;
  TW_ASSIGN_OR_RETURN(std::thread receiver, net.StartIn(1, [&] {
    auto l = Listen(net.address(1));
    if (!l.ok()) {
      port_p.set_value(l.status());
      return;
    }
    port_p.set_value(l->second);
    int c = accept4(l->first, nullptr, nullptr, SOCK_CLOEXEC);
    close(l->first);
    if (c < 0) {
      recv_status = ErrnoStatus(errno, "accept");
      return;
    }
    for (int i = 0; i < count && recv_status.ok(); ++i) {
      recv_status = RecvAll(c, dst.data(), chunk);
    }
    t1 = Clock::now();
    close(c);
  }));
  StatusOr<uint16_t> port = port_f.get();
  if (!port.ok()) {
    receiver.join();
    return port.status();
  }
  Status entered = net.RunIn(0, [&] {
    t0 = Clock::now();
    auto fd = ConnectTo(net.address(1), *port);
    if (!fd.ok()) {
      send_status = fd.status();
      return;
    }
    for (int i = 0; i < count && send_status.ok(); ++i) {
      send_status = SendAll(*fd, src.data(), chunk);
    }
    close(*fd);
  });
  receiver.join();
  TW_RETURN_IF_ERROR(entered);
  TW_RETURN_IF_ERROR(send_status);
  TW_RETURN_IF_ERROR(recv_status);
  const double s = std::chrono::duration<double>(t1 - t0).count();
  return s > 0 ? static_cast<double>(chunk) * count / s / 1e9 : 0.0;
}

StatusOr<std::vector<double>> TcpPingPongUs(const NetnsPair& net, int rounds) {
  // The echo end is a process of its own, as twd on the other node is: a listening socket
  // made by a thread in a's namespace (a socket stays in the namespace it was made in), then a
  // forked child that only accepts and echoes (no allocation after fork).
  StatusOr<std::pair<int, uint16_t>> l = UnavailableError("not listening");
  TW_RETURN_IF_ERROR(net.RunIn(0, [&] { l = Listen(net.address(0)); }));
  TW_RETURN_IF_ERROR(l.status());
  const pid_t echo = fork();
  if (echo < 0) {
    close(l->first);
    return ErrnoStatus(errno, "fork");
  }
  if (echo == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int c = accept4(l->first, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) _exit(1);
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint8_t msg[64];
    while (RecvAll(c, msg, sizeof msg).ok() && SendAll(c, msg, sizeof msg).ok()) {
    }
    _exit(0);
  }
  close(l->first);
  std::vector<double> lat;
  Status st;
  Status entered = net.RunIn(1, [&] {
    auto fd = ConnectTo(net.address(0), l->second);
    if (!fd.ok()) {
      st = fd.status();
      return;
    }
    int one = 1;
    setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint8_t msg[64] = {};
    lat.reserve(static_cast<size_t>(rounds));
    for (int i = 0; i < rounds && st.ok(); ++i) {
      auto t0 = Clock::now();
      st = SendAll(*fd, msg, sizeof msg);
      if (st.ok()) st = RecvAll(*fd, msg, sizeof msg);
      lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    close(*fd);  // the echo process sees the end and exits
  });
  if (!entered.ok() || !st.ok()) kill(echo, SIGKILL);
  waitpid(echo, nullptr, 0);
  TW_RETURN_IF_ERROR(entered);
  TW_RETURN_IF_ERROR(st);
  return lat;
}

}  // namespace tw::bench
