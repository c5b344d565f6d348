// A gtest fixture for the mesh tests that run several real twd in-process (tests/client/
// real_twd.h) as one mesh on 127.0.0.1: each node gets a free port, its own copy of the peers
// file and a mesh section; clients connect through each node's Unix socket. Chains are put with
// a recognisable byte pattern (ValueIs checks it), so a remote hit can be checked byte for byte.
//
// Threading: test-thread only. Lifetime: the nodes stop and the temporary directory goes at
// TearDown; a SoftFabric handed to a node must outlive the fixture's nodes.
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "real_twd.h"
#include "tw/client/admin_client.h"
#include "tw/client/client.h"

namespace tw::client::testing {

using namespace std::chrono_literals;

// A free TCP port on 127.0.0.1 (closed again: twd binds it right after).
inline uint32_t FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline Namespace TestNamespace(const std::string& model = "m",
                               const std::string& parallel = "tp=0/1") {
  Namespace ns;
  ns.model = model;
  ns.kv_dtype = "bf16";
  ns.parallel = parallel;
  ns.chunk_tokens = "4";
  return ns;
}

// Waits (bounded) until `done` holds: announces travel asynchronously, in batches.
template <typename F>
bool Eventually(F done) {
  const auto until = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return done();
}

class MeshFixture : public ::testing::Test {
 protected:
  // One twd: its node name, extra lines for its mesh section, and the (soft) RDMA fabric it
  // opens a port of instead of a device (nullptr: none).
  struct NodeSpec {
    std::string name;
    std::string mesh_extra;
    mesh::rdma::SoftFabric* fabric = nullptr;
  };

  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("twclient-mesh-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    nodes_.clear();
    std::filesystem::remove_all(dir_);
  }

  void StartNodes(const std::vector<NodeSpec>& specs) {
    std::vector<uint32_t> ports;
    std::string peers = "{\"peers\":[";
    for (size_t i = 0; i < specs.size(); ++i) {
      ports.push_back(FreePort());
      peers += (i ? "," : "") + std::string("{\"node\":\"") + specs[i].name +
               "\",\"address\":\"127.0.0.1\",\"port\":" + std::to_string(ports[i]) + "}";
    }
    peers += "]}";
    for (size_t i = 0; i < specs.size(); ++i) {
      const std::string peers_file = (dir_ / (specs[i].name + "-peers.json")).string();
      std::ofstream(peers_file) << peers;
      const std::string yaml =
          "mesh:\n  enabled: true\n  node_name: " + specs[i].name +
          "\n  listen_address: 127.0.0.1\n  port: " + std::to_string(ports[i]) +
          "\n  peers_file: " + peers_file + "\n  peer_timeout: 2s\n" + specs[i].mesh_extra;
      nodes_.push_back(std::make_unique<RealTwd>());
      if (specs[i].fabric != nullptr) nodes_.back()->UseRdmaFabric(specs[i].fabric);
      Status st = nodes_.back()->Start(yaml);
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
  }

  std::unique_ptr<Client> Connect(int node, const Namespace& ns = TestNamespace(),
                                  std::vector<Namespace> more = {}) {
    ClientOptions o;
    o.socket_path = nodes_[static_cast<size_t>(node)]->socket_path();
    o.arena_size = 8 << 20;
    o.namespaces = {ns};
    o.namespaces.insert(o.namespaces.end(), more.begin(), more.end());
    o.timeout = 5000ms;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Puts a chain of `n` chunks of `size` bytes (two segments) through `c`; returns the keys.
  std::vector<Key> PutChain(Client& c, size_t n, uint64_t size) {
    std::vector<Key> chain;
    Key parent = c.namespace_digest(0);
    for (size_t i = 0; i < n; ++i) {
      uint8_t* a = c.arena_data();
      for (uint64_t b = 0; b < size; ++b) a[b] = static_cast<uint8_t>(b * 31 + i * 7 + (b >> 8));
      PutItem p;
      p.ref.namespace_digest = c.namespace_digest(0);
      p.parent = parent;
      p.tokens = {uint32_t(i * 4), uint32_t(i * 4 + 1), uint32_t(i * 4 + 2), uint32_t(i * 4 + 3)};
      p.ref.key = ChunkKey(parent, {}, p.tokens);
      p.segment_sizes = {size / 4, size - size / 4};
      p.ranges = {ScatterRange{0, 0, size / 4, 0}, ScatterRange{1, 0, size - size / 4, size / 4}};
      auto put = c.Put({p});
      EXPECT_TRUE(put.ok() && (*put)[0].result == PutResult::kStored);
      chain.push_back(p.ref.key);
      parent = p.ref.key;
    }
    return chain;
  }
  // Whether `got` holds chunk `i` of a PutChain of `size`-byte chunks.
  static bool ValueIs(const uint8_t* got, size_t i, uint64_t size) {
    for (uint64_t b = 0; b < size; ++b) {
      if (got[b] != static_cast<uint8_t>(b * 31 + i * 7 + (b >> 8))) return false;
    }
    return true;
  }
  // A whole-value get of `key` into [at, at + len) of the arena.
  static GetItem Whole(Client& c, const Key& key, uint64_t at, uint64_t len) {
    GetItem g;
    g.ref = {key, c.namespace_digest(0)};
    g.arena_offset = at;
    g.arena_length = len;
    return g;
  }

  std::filesystem::path dir_;
  std::vector<std::unique_ptr<RealTwd>> nodes_;
};

}  // namespace tw::client::testing
