#include "tw/common/metrics.h"

#include <civetweb.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>
#include <mutex>
#include <sstream>

#include "prometheus/text_serializer.h"

namespace tw::metrics {

std::shared_ptr<prometheus::Registry> Registry() {
  // Never destroyed: metric references handed out must outlive every thread that uses them.
  static auto* registry =
      new std::shared_ptr<prometheus::Registry>(std::make_shared<prometheus::Registry>());
  return *registry;
}

prometheus::Family<prometheus::Counter>& CounterFamily(const std::string& name,
                                                       const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(*Registry());
}

prometheus::Family<prometheus::Gauge>& GaugeFamily(const std::string& name,
                                                   const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(*Registry());
}

prometheus::Family<prometheus::Histogram>& HistogramFamily(const std::string& name,
                                                           const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(*Registry());
}

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      10e-6, 25e-6, 50e-6,  100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3,
      25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0,    2.5,  5.0,    10.0};
  return kBuckets;
}

std::string RenderText() {
  prometheus::TextSerializer serializer;
  std::ostringstream out;
  serializer.Serialize(out, Registry()->Collect());
  return out.str();
}

struct MetricsServer::Impl {
  mg_context* ctx = nullptr;
  std::map<std::string, Handler> handlers;
  int port = 0;
  // civetweb's listening sockets (it does not hand them out; found by their port).
  std::vector<int> listening_fds;
};

namespace {

// The TCP sockets of this process that listen on `port`: civetweb's, found once right after
// mg_start (civetweb binds without SO_REUSEPORT, so no other socket listens on that port).
std::vector<int> ListeningSocketsOnPort(int port) {
  std::vector<int> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  while (const dirent* d = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(d->d_name, &end, 10);
    if (end == d->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
    struct stat st {};
    if (::fstat(int(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (::getsockopt(int(fd), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) {
      continue;
    }
    sockaddr_storage addr{};
    len = sizeof(addr);
    if (::getsockname(int(fd), reinterpret_cast<sockaddr*>(&addr), &len) != 0) continue;
    int bound = -1;
    if (addr.ss_family == AF_INET) bound = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) {
      bound = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    }
    if (bound == port) fds.push_back(int(fd));
  }
  ::closedir(dir);
  return fds;
}

int Reply(mg_connection* conn, int status, const std::string& content_type,
          const std::string& body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
            "Connection: close\r\n\r\n",
            status, status == 200 ? "OK" : "Service Unavailable", content_type.c_str(),
            body.size());
  mg_write(conn, body.data(), body.size());
  return status;
}

int HandleMetrics(mg_connection* conn, void*) {
  return Reply(conn, 200, "text/plain; version=0.0.4", RenderText());
}

int HandleOther(mg_connection* conn, void* cbdata) {
  auto* handler = static_cast<MetricsServer::Handler*>(cbdata);
  auto [status, body] = (*handler)();
  return Reply(conn, status, "text/plain", body);
}

}  // namespace

StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& address, std::map<std::string, Handler> handlers) {
  static std::once_flag init;
  std::call_once(init, [] { mg_init_library(0); });
  auto impl = std::make_unique<Impl>();
  impl->handlers = std::move(handlers);
  std::string ports = address;
  // civetweb wants "host:port" or "port"; "0.0.0.0:9400" works as is, ":9400" does not.
  if (!ports.empty() && ports[0] == ':') ports = ports.substr(1);
  const char* options[] = {"listening_ports",   ports.c_str(), "num_threads", "2",
                           "enable_keep_alive", "no",          nullptr};
  mg_callbacks callbacks{};
  callbacks.log_message = [](const mg_connection*, const char*) { return 1; };  // quiet
  impl->ctx = mg_start(&callbacks, nullptr, options);
  if (impl->ctx == nullptr) {
    return UnavailableError("metrics_address: cannot listen on \"" + address + "\"");
  }
  mg_set_request_handler(impl->ctx, "/metrics$", HandleMetrics, nullptr);
  for (auto& [path, handler] : impl->handlers) {
    mg_set_request_handler(impl->ctx, (path + "$").c_str(), HandleOther, &handler);
  }
  mg_server_port port{};
  if (mg_get_server_ports(impl->ctx, 1, &port) >= 1) impl->port = port.port;
  if (impl->port > 0) impl->listening_fds = ListeningSocketsOnPort(impl->port);
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() {
  if (impl_->ctx == nullptr) return;
  // civetweb's accept thread polls its listening sockets in rounds of 2 s and looks at its
  // stop flag between rounds, so mg_stop alone takes up to 2 s. Shutting the sockets down
  // ends the round at once (a listening socket shut down polls as hung up; accepting on it
  // fails, which civetweb logs to our quiet callback); mg_stop then closes them.
  for (int fd : impl_->listening_fds) ::shutdown(fd, SHUT_RDWR);
  mg_stop(impl_->ctx);
}

int MetricsServer::port() const { return impl_->port; }

}  // namespace tw::metrics
