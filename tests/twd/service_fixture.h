// A twd Server + ServiceCore over a FakeStore in a fresh temporary directory, for the
// socket-level service tests.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "fake_store.h"
#include "server.h"
#include "service_core.h"
#include "test_client.h"

namespace tw::twd::testing {

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/twdtest.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    config_.socket.path = dir_ + "/twd.sock";
    config_.admin_socket.path = dir_ + "/admin.sock";
    config_.limits.max_batch = 64;
    config_.limits.max_value_size = 1 << 20;
    config_.limits.max_arena_size = 16 << 20;
  }
  void TearDown() override {
    StopServer();
    std::filesystem::remove_all(dir_);
  }

  void StartServer() {
    service_ = std::make_unique<ServiceCore>(config_, &store_);
    ServerOptions o;
    o.socket_path = config_.socket.path;
    o.admin_socket_path = config_.admin_socket.path;
    o.workers = 4;
    auto s = Server::Start(o, service_.get());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(*s);
  }
  // Configures a single tenant "alpha" for the given client uids and gids.
  void OnlyTenantAlpha(std::vector<uint32_t> uids, std::vector<uint32_t> gids = {}) {
    config::TenantConfig t;
    t.name = "alpha";
    t.uids = std::move(uids);
    t.gids = std::move(gids);
    config_.tenants = {t};
  }
  void StopServer() {
    if (server_) server_->Stop(std::chrono::seconds(5));
    server_.reset();
    service_.reset();
  }

  TestClient Connect(bool admin = false) {
    auto c = TestClient::Connect(admin ? config_.admin_socket.path : config_.socket.path);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return std::move(*c);
  }

  // A connected client with one namespace and a 1 MiB arena.
  TestClient Ready(const Namespace& ns, Key* digest) {
    TestClient c = Connect();
    auto h = c.Hello({ns}, 1 << 20);
    EXPECT_TRUE(h.ok()) << h.status().ToString();
    if (h.ok() && h->namespace_digests_size() == 1) {
      *digest = protocol::KeyFromBytes(h->namespace_digests(0));
    }
    return c;
  }

  std::string dir_;
  config::Config config_;
  FakeStore store_;
  std::unique_ptr<ServiceCore> service_;
  std::unique_ptr<Server> server_;
};

}  // namespace tw::twd::testing
