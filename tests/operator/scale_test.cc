// 1,000 TokenWarehouse objects: every one reconciles (children + status), and the operator's
// memory stays bounded — a second full round of spec changes must not grow it much.
#include <cstdlib>
#include <fstream>
#include <thread>

#include "fake_cluster.h"
#include "gtest/gtest.h"
#include "tw/operator/operator.h"

namespace tw::op {
namespace {

using nlohmann::json;
using testing::Eventually;
using testing::FakeCluster;

const int kObjects =
    std::getenv("TW_SCALE_OBJECTS") ? std::atoi(std::getenv("TW_SCALE_OBJECTS")) : 1000;

// Resident set size of this process, bytes.
uint64_t RssBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

json Spec(int round) {
  return {{"tiers", {{"dram", {{"capacity", std::to_string(2 + round) + "Gi"}}}}}};
}

// Counts objects whose status observed generation `gen`.
int Observed(FakeCluster& cluster, int64_t gen) {
  auto resp = cluster.client().Do(
      "GET", "/apis/tokenwarehouse.io/v1alpha1/namespaces/default/tokenwarehouses");
  if (!resp.ok() || resp->status != 200) return -1;
  int n = 0;
  json list = json::parse(resp->body);
  for (const auto& tw : list["items"]) {
    n += tw.value("status", json::object()).value("observedGeneration", int64_t{0}) >= gen;
  }
  return n;
}

// Polls once a second: listing 1,000 objects is the expensive part for the fake.
bool AllObserved(FakeCluster& cluster, int64_t gen, int want) {
  for (int i = 0; i < 600; ++i) {
    if (Observed(cluster, gen) == want) return true;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return false;
}

TEST(OperatorScaleTest, ThousandTokenWarehousesWithBoundedMemory) {
  FakeCluster cluster({"--history", "20000"});
  ASSERT_TRUE(cluster.ok());
  OperatorOptions options = cluster.Options();
  options.workers = 4;
  options.rate_limiter.qps = 1e6;  // the token bucket is for real clusters, not this test
  options.rate_limiter.burst = 1000000;
  auto op = Operator::Create(options);
  ASSERT_TRUE(op.ok());
  ASSERT_TRUE((*op)->Start().ok());
  ASSERT_TRUE(Eventually([&] { return (*op)->Synced(); }));
  uint64_t rss_start = RssBytes();

  for (int i = 0; i < kObjects; ++i) {
    ASSERT_TRUE(cluster.ApplyTokenWarehouse("default", "tw-" + std::to_string(i), Spec(0)).ok());
  }
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(AllObserved(cluster, 1, kObjects))
      << Observed(cluster, 1) << " of " << kObjects << " reconciled";
  ASSERT_TRUE(Eventually([&] { return (*op)->queue().Len() == 0; }));
  uint64_t rss_round1 = RssBytes();

  for (int i = 0; i < kObjects; ++i) {
    ASSERT_TRUE(cluster.ApplyTokenWarehouse("default", "tw-" + std::to_string(i), Spec(1)).ok());
  }
  auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(AllObserved(cluster, 2, kObjects)) << Observed(cluster, 2);
  auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(Eventually([&] { return (*op)->queue().Len() == 0; }));
  uint64_t rss_round2 = RssBytes();

  EXPECT_EQ((*op)->tokenwarehouses().Size(), static_cast<size_t>(kObjects));
  std::printf("round 1 %.1f s, round 2 %.1f s\n", std::chrono::duration<double>(t1 - t0).count(),
              std::chrono::duration<double>(t2 - t1).count());
  std::printf(
      "rss: start %.1f MiB, after 1000 objects %.1f MiB, after a second round %.1f MiB; "
      "%llu reconciles\n",
      rss_start / 1048576.0, rss_round1 / 1048576.0, rss_round2 / 1048576.0,
      static_cast<unsigned long long>((*op)->reconciles()));
  // Caches of 1,000 objects and their 4,000 children: tens of MiB, not hundreds. AddressSanitizer
  // keeps freed memory in quarantine and adds redzones, so its bounds are looser.
#if defined(__SANITIZE_ADDRESS__)
  constexpr uint64_t kFirstRound = uint64_t{1} << 30, kSecondRound = uint64_t{256} << 20;
#else
  constexpr uint64_t kFirstRound = uint64_t{256} << 20, kSecondRound = uint64_t{64} << 20;
#endif
  EXPECT_LT(rss_round1 - rss_start, kFirstRound);
  // Round two replaces objects; it must not keep the old ones around.
  EXPECT_LT(rss_round2, rss_round1 + kSecondRound);
  (*op)->Stop();
}

}  // namespace
}  // namespace tw::op
