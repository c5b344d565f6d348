// The twd daemon: flags over the config file, HTTP /healthz /readyz /metrics, reload of the
// run-time fields, graceful shutdown — in-process over a FakeStore, and as a process
// (twd_over_fake_store: the same daemon main over a FakeStore) for signals, --version and the
// socket lock.
#include "tw/twd/daemon.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "fake_store.h"
#include "namespace_registry.h"
#include "process.h"
#include "service_fixture.h"
#include "testing/http_get.h"
#include "tw/common/log.h"
#include "tw/twd/options.h"

namespace tw::twd::testing {
namespace {

using protocol::Opcode;

using tw::testing::HttpGet;

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/twddaemon.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void WriteConfig(const std::string& extra) {
    std::ofstream(dir_ + "/twd.yaml") << "socket:\n  path: " << dir_ << "/twd.sock\n"
                                      << "admin_socket:\n  path: " << dir_ << "/admin.sock\n"
                                      << "metrics:\n  address: \"\"\n"
                                      << extra;
  }
  std::string dir_;
};

std::vector<char*> Argv(std::vector<std::string>& args) {
  std::vector<char*> v;
  for (auto& a : args) v.push_back(a.data());
  return v;
}

TEST_F(DaemonTest, FlagsOverrideTheConfigFile) {
  WriteConfig("log_level: warn\ndram:\n  capacity: 1GiB\n");
  std::filesystem::create_directory(dir_ + "/nvme0");
  std::vector<std::string> args = {"twd",
                                   "--config",
                                   dir_ + "/twd.yaml",
                                   "--socket",
                                   dir_ + "/other.sock",
                                   "--data-dir",
                                   dir_ + "/nvme0",
                                   "--data-dir",
                                   dir_ + "/nvme1.img",
                                   "--dram-capacity",
                                   "64MiB",
                                   "--nvme-capacity",
                                   "1GiB",
                                   "--log-level",
                                   "debug",
                                   "--workers",
                                   "6"};
  auto argv = Argv(args);
  auto o = ParseFlags(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  auto c = BuildConfig(*o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->socket.path, dir_ + "/other.sock");
  EXPECT_EQ(c->admin_socket.path, dir_ + "/admin.sock");  // from the file
  EXPECT_EQ(c->dram.capacity, uint64_t{64} << 20);
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->workers, 6u);
  ASSERT_EQ(c->nvme.paths.size(), 2u);
  EXPECT_EQ(c->nvme.paths[0].path, dir_ + "/nvme0/twd.data");
  EXPECT_EQ(c->nvme.paths[1].path, dir_ + "/nvme1.img");
  EXPECT_EQ(c->nvme.paths[0].capacity, uint64_t{512} << 20);

  std::vector<std::string> bad = {"twd", "--dram-capacity", "lots"};
  auto bad_argv = Argv(bad);
  EXPECT_FALSE(ParseFlags(static_cast<int>(bad_argv.size()), bad_argv.data()).ok());

  // A worker count beyond config::kMaxWorkers parses as a flag and fails validation.
  std::vector<std::string> many = {"twd", "--workers", "100000"};
  auto many_argv = Argv(many);
  auto many_o = ParseFlags(static_cast<int>(many_argv.size()), many_argv.data());
  ASSERT_TRUE(many_o.ok()) << many_o.status().ToString();
  auto many_c = BuildConfig(*many_o);
  ASSERT_FALSE(many_c.ok());
  EXPECT_NE(many_c.status().message().find("workers"), std::string_view::npos);
}

TEST_F(DaemonTest, HealthReloadAndShutdownInProcess) {
  WriteConfig("log_level: info\n");
  DaemonOptions o;
  o.config_path = dir_ + "/twd.yaml";
  o.metrics_address = "127.0.0.1:0";
  // The daemon owns (and at shutdown destroys) the store: count its closes out here.
  struct CountingStore : FakeStore {
    std::atomic<int>* closed = nullptr;
    Status Close(std::chrono::nanoseconds grace) override {
      closed->fetch_add(1);
      return FakeStore::Close(grace);
    }
  };
  std::atomic<int> closed{0};
  FakeStore* store = nullptr;
  StoreHooks hooks;
  hooks.open = [&](const config::Config&) -> StatusOr<std::unique_ptr<store::Store>> {
    auto s = std::make_unique<CountingStore>();
    s->closed = &closed;
    store = s.get();
    return std::unique_ptr<store::Store>(std::move(s));
  };
  hooks.reconfigure = [](store::Store& s, const config::Config&) {
    static_cast<FakeStore&>(s).reconfigures++;
    return OkStatus();
  };
  auto d = Daemon::Start(o, hooks);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const int port = (*d)->metrics_port();
  ASSERT_GT(port, 0);
  EXPECT_EQ(HttpGet(port, "/healthz").first, 200);
  EXPECT_EQ(HttpGet(port, "/readyz").first, 200);

  // A client works, and the metrics page counts it.
  auto c = TestClient::Connect(dir_ + "/twd.sock");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Hello({TestNamespace()}, 1 << 16).ok());
  auto metrics = HttpGet(port, "/metrics");
  EXPECT_NE(metrics.second.find("tokenwarehouse_connected_clients"), std::string::npos);

  // Reload: a tenant map and a new log level take effect; the file change is noticed.
  EXPECT_FALSE((*d)->ConfigFileChanged());
  WriteConfig("log_level: debug\ntenants:\n  - name: alpha\n    uids: [" +
              std::to_string(::getuid()) + "]\n");
  EXPECT_TRUE((*d)->ConfigFileChanged());
  ASSERT_TRUE((*d)->Reload().ok());
  EXPECT_FALSE((*d)->ConfigFileChanged());
  EXPECT_EQ(log::GetLevel(), log::Level::kDebug);
  EXPECT_EQ(store->reconfigures.load(), 1);
  auto tenant = (*d)->core()->TenantOf({0, ::getuid(), ::getgid()});
  ASSERT_TRUE(tenant.ok());
  EXPECT_EQ(*tenant, "alpha");
  // A broken file keeps the running config.
  std::ofstream(dir_ + "/twd.yaml") << "no_such_field: 1\n";
  EXPECT_FALSE((*d)->Reload().ok());
  EXPECT_EQ((*d)->config().log_level, "debug");
  log::SetLevel(log::Level::kInfo);

  ASSERT_TRUE((*d)->Shutdown().ok());
  EXPECT_FALSE((*d)->ready());
  EXPECT_EQ(closed.load(), 1);
  EXPECT_FALSE(FileExists(dir_ + "/twd.sock"));
}

TEST_F(DaemonTest, TheGpuPathIsReportedInReadyzAndStats) {
  DaemonOptions o;
  o.config_path = dir_ + "/twd.yaml";
  o.metrics_address = "127.0.0.1:0";
  StoreHooks hooks;
  hooks.open = [](const config::Config&) -> StatusOr<std::unique_ptr<store::Store>> {
    return std::unique_ptr<store::Store>(std::make_unique<FakeStore>());
  };
  for (bool enabled : {false, true}) {
    WriteConfig(enabled ? "gpu:\n  enabled: true\n" : "log_level: info\n");
    auto d = Daemon::Start(o, hooks);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    const std::string& line = (*d)->gpu_status();
    if (enabled) {
      // This machine's answer, whatever it is: on, or off with a reason.
      EXPECT_TRUE(line.starts_with("gpu on: ") || line.starts_with("gpu off: ")) << line;
      EXPECT_NE(line.find("; gds "), std::string::npos) << line;
    } else {
      EXPECT_EQ(line, "gpu disabled (gpu.enabled is false)");
    }
    auto ready = HttpGet((*d)->metrics_port(), "/readyz");
    EXPECT_EQ(ready.first, 200);
    EXPECT_TRUE(ready.second.ends_with("\r\n\r\nready\n" + line + "\n")) << ready.second;
    EXPECT_EQ((*d)->core()->Stats(nullptr).gpu, line);
    ASSERT_TRUE((*d)->Shutdown().ok());
  }
}

TEST_F(DaemonTest, DeclaredNamespacesAreKeptBesideTheData) {
  std::filesystem::create_directory(dir_ + "/nvme0");
  DaemonOptions o;
  o.socket = dir_ + "/twd.sock";
  o.admin_socket = dir_ + "/admin.sock";
  o.metrics_address = "";
  o.data_dirs = {dir_ + "/nvme0"};
  StoreHooks hooks;
  hooks.open = [](const config::Config&) -> StatusOr<std::unique_ptr<store::Store>> {
    return std::unique_ptr<store::Store>(std::make_unique<FakeStore>());
  };
  const std::string registry = dir_ + "/nvme0/twd.data.namespaces";
  {
    auto d = Daemon::Start(o, hooks);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(NamespaceRegistryPath((*d)->config()), registry);
    auto c = TestClient::Connect(dir_ + "/twd.sock");
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c->Hello({TestNamespace()}, 1 << 16).ok());
    ASSERT_TRUE((*d)->Shutdown().ok());
  }
  {
    auto r = NamespaceRegistry::Open(registry, 16);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    auto fields = (*r)->Find(NamespaceDigest(TestNamespace()));
    ASSERT_TRUE(fields.has_value());
    EXPECT_EQ(*fields, TestNamespace());
  }
  // A file that is not a registry: twd serves all the same (fields in memory only) and
  // leaves the file as it found it.
  std::ofstream(registry, std::ios::trunc) << "someone else's file";
  auto d = Daemon::Start(o, hooks);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  auto c = TestClient::Connect(dir_ + "/twd.sock");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Hello({TestNamespace()}, 1 << 16).ok());
  ASSERT_TRUE((*d)->Shutdown().ok());
  std::ifstream in(registry);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "someone else's file");
}

std::string FakeTwd() { return std::string(TW_BINARY_DIR) + "/bin/twd_over_fake_store"; }

TEST_F(DaemonTest, VersionFlag) {
  Process p = Process::Spawn({FakeTwd(), "--version"}, {}, dir_ + "/log");
  EXPECT_EQ(p.Wait(), 0);
  EXPECT_NE(ReadFile(dir_ + "/log").find("twd 0.1.0"), std::string::npos);
}

TEST_F(DaemonTest, SigtermFinishesInFlightRequestsAndExitsZero) {
  WriteConfig("shutdown_grace: 30s\n");
  const std::string started = dir_ + "/get-started", closed = dir_ + "/closed";
  std::vector<std::string> env = {"TW_FAKE_GET_STARTED=" + started, "TW_FAKE_GET_DELAY_MS=300",
                                  "TW_FAKE_CLOSED=" + closed};
  Process p = Process::Spawn({FakeTwd(), "--config", dir_ + "/twd.yaml"}, env, dir_ + "/log");
  ASSERT_TRUE(WaitFor([&] { return FileExists(dir_ + "/twd.sock"); }));

  // A second twd on the same socket is refused while the first lives.
  Process second = Process::Spawn({FakeTwd(), "--config", dir_ + "/twd.yaml"}, {}, dir_ + "/log2");
  EXPECT_EQ(second.Wait(), 1);
  EXPECT_NE(ReadFile(dir_ + "/log2").find("another twd"), std::string::npos);

  auto c = TestClient::Connect(dir_ + "/twd.sock");
  ASSERT_TRUE(c.ok());
  auto h = c->Hello({TestNamespace()}, 1 << 16);
  ASSERT_TRUE(h.ok());
  const Key ns = protocol::KeyFromBytes(h->namespace_digests(0));
  pb::PutRequest put;
  *put.add_items() = MakePutItem(ns, ns, {1, 2, 3, 4}, {128}, 0);
  ASSERT_TRUE(c->Call<pb::PutResponse>(Opcode::kPut, put).ok());
  // A get that is still running in the store when SIGTERM arrives.
  pb::GetRequest g;
  auto* item = g.add_items();
  *item->mutable_ref() = put.items(0).ref();
  item->set_arena_length(4096);
  ASSERT_TRUE(c->SendRaw(protocol::EncodeRequest(Opcode::kGet, 78, g)).ok());
  ASSERT_TRUE(WaitFor([&] { return FileExists(started); }));
  p.Signal(SIGTERM);
  // The in-flight get is answered (a hit), then twd exits 0 having closed the store.
  auto r = c->ReadReply();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->header.request_id, 78u);
  pb::GetResponse resp;
  ASSERT_TRUE(protocol::ParseBody(r->body, &resp).ok());
  EXPECT_EQ(resp.results(0).miss(), pb::MISS_REASON_NONE);
  EXPECT_EQ(p.Wait(), 0);
  EXPECT_TRUE(FileExists(closed));
  EXPECT_FALSE(FileExists(dir_ + "/twd.sock"));
}

TEST_F(DaemonTest, SighupReloads) {
  WriteConfig("log_level: info\n");
  Process p = Process::Spawn({FakeTwd(), "--config", dir_ + "/twd.yaml"}, {}, dir_ + "/log");
  ASSERT_TRUE(WaitFor([&] { return FileExists(dir_ + "/twd.sock"); }));
  WriteConfig("log_level: debug\n");
  p.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor(
      [&] { return ReadFile(dir_ + "/log").find("config reloaded") != std::string::npos; }));
  EXPECT_NE(ReadFile(dir_ + "/log").find("log_level=debug"), std::string::npos);
  // A changed file is picked up without a signal (ConfigMap updates).
  WriteConfig("log_level: info\n");
  ASSERT_TRUE(
      WaitFor([&] { return ReadFile(dir_ + "/log").find("log_level=info") != std::string::npos; }));
  p.Signal(SIGTERM);
  EXPECT_EQ(p.Wait(), 0);
}

}  // namespace
}  // namespace tw::twd::testing
