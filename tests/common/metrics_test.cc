#include "tw/common/metrics.h"

#include <gtest/gtest.h>

#include "testing/http_get.h"

namespace tw::metrics {
namespace {

std::string HttpGet(int port, const std::string& path) {
  return tw::testing::HttpGet(port, path).second;
}

TEST(Metrics, CountersRenderAndServe) {
  auto& family = CounterFamily("tokenwarehouse_test_hits_total", "hits in the test");
  family.Add({{"tier", "dram"}}).Increment(3);
  auto& hist = HistogramFamily("tokenwarehouse_test_op_seconds", "latency");
  hist.Add({{"op", "get"}}, LatencyBuckets()).Observe(0.002);
  std::string text = RenderText();
  EXPECT_NE(text.find("tokenwarehouse_test_hits_total{tier=\"dram\"} 3"), std::string::npos)
      << text;
  EXPECT_NE(text.find("tokenwarehouse_test_op_seconds_count{op=\"get\"} 1"), std::string::npos);

  bool ready = false;
  auto server = MetricsServer::Start(
      "127.0.0.1:0", {{"/healthz", [] { return std::make_pair(200, std::string("ok")); }},
                      {"/readyz", [&] {
                         return ready ? std::make_pair(200, std::string("ready"))
                                      : std::make_pair(503, std::string("not ready"));
                       }}});
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  int port = (*server)->port();
  ASSERT_GT(port, 0);
  EXPECT_NE(HttpGet(port, "/metrics").find("tokenwarehouse_test_hits_total"), std::string::npos);
  std::string health = HttpGet(port, "/healthz");
  EXPECT_NE(health.find("200"), std::string::npos);
  EXPECT_NE(health.find("ok"), std::string::npos);
  EXPECT_NE(HttpGet(port, "/readyz").find("503"), std::string::npos);
  ready = true;
  EXPECT_NE(HttpGet(port, "/readyz").find("200"), std::string::npos);
}

TEST(Metrics, BadAddressIsAClearError) {
  auto server = MetricsServer::Start("256.1.1.1:99999", {});
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("metrics_address"), std::string_view::npos);
}

}  // namespace
}  // namespace tw::metrics
