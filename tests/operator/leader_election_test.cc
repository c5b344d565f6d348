// Leader election on a Lease in the fake API server: in-process electors, and two real
// tw-operator processes of which the leader is SIGKILLed.
#include "tw/operator/leader_election.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "fake_cluster.h"
#include "gtest/gtest.h"
#include "tw/operator/render.h"

namespace tw::op {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::Eventually;
using testing::FakeCluster;

LeaderElectionConfig FastConfig(const std::string& identity) {
  LeaderElectionConfig c;
  c.lease_namespace = "default";
  c.lease_name = "test-lease";
  c.identity = identity;
  c.lease_duration = milliseconds(2000);
  c.renew_deadline = milliseconds(1500);
  c.retry_period = milliseconds(200);
  return c;
}

std::unique_ptr<KubeClient> Client(const FakeCluster& cluster) {
  KubeConfig cfg;
  cfg.server = cluster.server();
  return std::move(*KubeClient::Create(cfg));
}

std::string Holder(FakeCluster& cluster, const std::string& name = "test-lease") {
  auto lease = cluster.Get(kinds::kLease, "default", name);
  return lease.ok() ? (*lease)["spec"].value("holderIdentity", "") : "";
}

TEST(LeaderElectionTest, DefaultIdentityIsHostnameUnderscoreUuid) {
  std::string id = DefaultIdentity();
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  EXPECT_EQ(id.rfind(std::string(host) + "_", 0), 0u) << id;
  EXPECT_EQ(id.size(), std::string(host).size() + 1 + 36);
  EXPECT_NE(DefaultIdentity(), id);
}

TEST(LeaderElectionTest, ExactlyOneLeaderAndHandOverOnRelease) {
  FakeCluster cluster;
  ASSERT_TRUE(cluster.ok());
  auto ca = Client(cluster), cb = Client(cluster);
  std::atomic<int> started_a{0}, started_b{0};
  LeaderElector a(
      ca.get(), FastConfig("a"), [&] { ++started_a; }, nullptr);
  LeaderElector b(
      cb.get(), FastConfig("b"), [&] { ++started_b; }, nullptr);
  a.Start();
  b.Start();
  ASSERT_TRUE(Eventually([&] { return a.IsLeader() || b.IsLeader(); }, milliseconds(10000)));
  // For a while (several lease durations) exactly one leads, and the Lease says which.
  for (int i = 0; i < 30; ++i) {
    EXPECT_NE(a.IsLeader(), b.IsLeader());
    std::this_thread::sleep_for(milliseconds(100));
  }
  LeaderElector& leader = a.IsLeader() ? a : b;
  LeaderElector& other = a.IsLeader() ? b : a;
  EXPECT_EQ(Holder(cluster), leader.identity());
  leader.Stop();  // releases the lease
  EXPECT_TRUE(Eventually([&] { return other.IsLeader(); }, milliseconds(10000)));
  EXPECT_EQ(Holder(cluster), other.identity());
  auto lease = cluster.Get(kinds::kLease, "default", "test-lease");
  ASSERT_TRUE(lease.ok());
  EXPECT_GE((*lease)["spec"].value("leaseTransitions", 0), 1);
  EXPECT_EQ(started_a + started_b, 2);
  other.Stop();
}

TEST(LeaderElectionTest, StopsLeadingWhenTheLeaseIsTaken) {
  FakeCluster cluster;
  ASSERT_TRUE(cluster.ok());
  auto ca = Client(cluster);
  std::atomic<bool> stopped{false};
  LeaderElector a(ca.get(), FastConfig("a"), nullptr, [&] { stopped = true; });
  a.Start();
  ASSERT_TRUE(Eventually([&] { return a.IsLeader(); }, milliseconds(10000)));
  // Someone else writes the lease as theirs and keeps renewing it.
  std::atomic<bool> done{false};
  std::thread thief([&] {
    while (!done) {
      auto lease = cluster.Get(kinds::kLease, "default", "test-lease");
      if (lease.ok()) {
        (*lease)["spec"]["holderIdentity"] = "thief";
        (*lease)["spec"]["renewTime"] = "2030-01-01T00:00:00.000000Z";
        (*lease)["spec"]["leaseDurationSeconds"] = 3600;
        cluster.client()
            .Update(kinds::kLease, "default", "test-lease", *lease)
            .status()
            .IgnoreError();
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
  });
  EXPECT_TRUE(Eventually([&] { return !a.IsLeader() && stopped; }, milliseconds(10000)));
  done = true;
  thief.join();
  a.Stop();
}

// Two tw-operator processes: exactly one leads; SIGKILL it (no release) and the other takes
// over once the lease expires, and then reconciles.
class OperatorProcess {
 public:
  OperatorProcess(const std::string& kubeconfig, const std::string& out) : out_(out) {
    pid_ = fork();
    if (pid_ == 0) {
      FILE* f = freopen(out.c_str(), "w", stdout);
      FILE* g = freopen((out + ".err").c_str(), "w", stderr);
      (void)f;
      (void)g;
      std::string bin = std::string(TW_BINARY_DIR) + "/bin/tw-operator";
      execl(bin.c_str(), bin.c_str(), "--kubeconfig", kubeconfig.c_str(), "--leader-elect",
            "--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "250ms",
            "--leader-election-namespace", "default", "--metrics-address", "127.0.0.1:0",
            "--health-address", "127.0.0.1:0", "--watch-timeout", "5s", nullptr);
      _exit(127);
    }
  }
  ~OperatorProcess() { Kill(SIGTERM); }
  void Kill(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  std::string Identity() const {
    std::ifstream in(out_);
    std::string line;
    while (std::getline(in, line)) {
      auto pos = line.find("identity=");
      if (pos != std::string::npos) {
        std::string rest = line.substr(pos + 9);
        return rest.substr(0, rest.find(' '));
      }
    }
    return "";
  }

 private:
  std::string out_;
  pid_t pid_ = -1;
};

TEST(LeaderElectionTest, TwoProcessesOneLeaderTakeoverAfterKill) {
  FakeCluster cluster;
  ASSERT_TRUE(cluster.ok());
  std::string kubeconfig = cluster.WriteKubeconfig();
  std::string dir = kubeconfig.substr(0, kubeconfig.rfind('/'));
  auto a = std::make_unique<OperatorProcess>(kubeconfig, dir + "/a.out");
  auto b = std::make_unique<OperatorProcess>(kubeconfig, dir + "/b.out");
  ASSERT_TRUE(Eventually([&] { return !a->Identity().empty() && !b->Identity().empty(); }));
  ASSERT_TRUE(Eventually([&] { return !Holder(cluster, "tw-operator-leader").empty(); }));
  std::string holder = Holder(cluster, "tw-operator-leader");
  ASSERT_TRUE(holder == a->Identity() || holder == b->Identity()) << holder;
  bool a_leads = holder == a->Identity();
  // The leader reconciles; the standby does not write.
  ASSERT_TRUE(
      cluster.ApplyTokenWarehouse("default", "pool", {{"tiers", {{"dram", {{"capacity", "2Gi"}}}}}})
          .ok());
  ASSERT_TRUE(
      Eventually([&] { return cluster.Get(kinds::kDaemonSet, "default", "pool-twd").ok(); }));

  // Kill the leader without letting it release the lease.
  (a_leads ? a : b)->Kill(SIGKILL);
  std::string survivor = a_leads ? b->Identity() : a->Identity();
  EXPECT_TRUE(Eventually([&] { return Holder(cluster, "tw-operator-leader") == survivor; }));
  // The new leader reconciles: a deleted child comes back.
  ASSERT_TRUE(cluster.client().Delete(kinds::kDaemonSet, "default", "pool-twd").ok());
  EXPECT_TRUE(
      Eventually([&] { return cluster.Get(kinds::kDaemonSet, "default", "pool-twd").ok(); }));
}

}  // namespace
}  // namespace tw::op
