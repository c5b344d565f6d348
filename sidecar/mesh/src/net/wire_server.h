// WireServer: the holder and home roles of the peer service on the raw wire (wire_codec.h):
// Locate answered from the Directory, Fetch answered from the ChunkSource with the value sent
// by sendmsg straight from the pooled buffer it was read into (header and bytes in one call).
// The gRPC PeerServer owns it and names its port in Health, so a requester finds it; without
// it (or with mutual TLS, under which the wire is not opened) requesters use gRPC.
//
// Threading: one accepting thread, and one thread per open connection (a connection carries
// one request at a time; requesters keep them open and reuse them). At most
// `max_connections` are open at once: one more is answered RESOURCE_EXHAUSTED and closed.
// The directory and the source are called from the connection threads. Lifetime: Start() →
// Stop() (or destruction); the directory and source outlive it.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "buffer_pool.h"
#include "tw/common/status.h"
#include "tw/mesh/directory.h"
#include "tw/mesh/transport.h"

namespace tw::mesh::net {

class WireServer {
 public:
  struct Options {
    std::string listen_address = "0.0.0.0";
    uint32_t port = 0;  // 0: a free port (port() says which)
    size_t max_connections = 512;
    uint64_t max_value_size = uint64_t{256} << 20;
    // Called after each value served: the requesting node and the bytes.
    std::function<void(const std::string& node, uint64_t bytes)> on_served;
  };

  // Binds and starts accepting. UNAVAILABLE when the address cannot be bound.
  static StatusOr<std::unique_ptr<WireServer>> Start(Options options, Directory* directory,
                                                     ChunkSource* source);
  ~WireServer();
  WireServer(const WireServer&) = delete;
  WireServer& operator=(const WireServer&) = delete;

  uint32_t port() const { return port_; }
  // Stops accepting, closes every connection (a fetch being sent stops), joins the threads.
  void Stop();

 private:
  struct Conn {
    int fd = -1;
    std::thread thread;
    std::atomic<bool> done{false};
  };
  WireServer(Options options, Directory* directory, ChunkSource* source);
  void AcceptLoop();
  void Serve(Conn* c);
  // Joins and closes finished connections. REQUIRES: mu_ held.
  void ReapLocked();
  Status ServeLocate(int fd, std::string_view body);
  Status ServeFetch(int fd, std::string_view body);

  const Options o_;
  Directory* const directory_;
  ChunkSource* const source_;
  const std::shared_ptr<BufferPool> pool_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: Stop wakes the accepting thread
  uint32_t port_ = 0;
  std::thread acceptor_;
  std::mutex mu_;
  std::list<Conn> conns_;  // GUARDED_BY(mu_)
  bool stopping_ = false;  // GUARDED_BY(mu_)
  std::once_flag stopped_;
};

}  // namespace tw::mesh::net
