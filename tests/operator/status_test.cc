#include "tw/operator/status.h"

#include "gtest/gtest.h"
#include "tw/operator/render.h"

namespace tw::op {
namespace {

using nlohmann::json;

json Tw(int64_t generation, json status = json::object()) {
  return {{"metadata", {{"name", "pool"}, {"namespace", "default"}, {"generation", generation}}},
          {"status", status}};
}

json Pod(const std::string& node, const std::string& hash, bool ready) {
  return {
      {"metadata", {{"name", "twd-" + node}, {"annotations", {{kAnnotationTemplateHash, hash}}}}},
      {"spec", {{"nodeName", node}}},
      {"status",
       {{"phase", "Running"},
        {"podIP", "10.0.0.1"},
        {"conditions", json::array({{{"type", "Ready"},
                                     {"status", ready ? "True" : "False"},
                                     {"reason", ready ? "" : "ContainersNotReady"}}})}}}};
}

json Ds(int desired, int64_t gen = 1, int64_t observed = 1) {
  return {{"metadata", {{"generation", gen}}},
          {"status", {{"desiredNumberScheduled", desired}, {"observedGeneration", observed}}}};
}

const json* Cond(const json& status, const std::string& type) {
  for (const auto& c : status["conditions"]) {
    if (c["type"] == type) return &c;
  }
  return nullptr;
}

TEST(StatusTest, OnlyUpdatedReadyPodsCount) {
  StatusInputs in;
  in.daemon_set = Ds(3);
  in.template_hash = "new";
  in.pods = {Pod("a", "new", true), Pod("b", "old", true), Pod("c", "new", false)};
  in.now = "2026-01-01T00:00:00Z";
  json s = ComputeStatus(Tw(4), in);
  EXPECT_EQ(s["observedGeneration"], 4);
  EXPECT_EQ(s["desiredNodes"], 3);
  EXPECT_EQ(s["readyNodes"], 1);
  EXPECT_EQ(s["updatedNodes"], 2);
  EXPECT_EQ(s["phase"], "Progressing");
  ASSERT_EQ(s["notReadyNodes"].size(), 2u);
  EXPECT_EQ(s["notReadyNodes"][0]["node"], "b");
  EXPECT_EQ(s["notReadyNodes"][0]["reason"], "Outdated");
  EXPECT_EQ(s["notReadyNodes"][1]["reason"], "ContainersNotReady");
  EXPECT_EQ((*Cond(s, "AllNodesReady"))["status"], "False");
  EXPECT_EQ((*Cond(s, "Progressing"))["status"], "True");
  EXPECT_EQ((*Cond(s, "ConfigValid"))["status"], "True");
  EXPECT_EQ((*Cond(s, "Available"))["observedGeneration"], 4);
}

// Numbers from the API server are outside input: a float or an out-of-range number where an
// integer belongs reads as absent, never as an undefined conversion (found by the
// operator_json fuzz target: an observedGeneration of 3.9e44).
TEST(StatusTest, NumbersOutOfIntegerRangeReadAsAbsent) {
  StatusInputs in;
  in.daemon_set = {{"metadata", {{"generation", 1.5e300}}},
                   {"status",
                    {{"desiredNumberScheduled", 1e30},
                     {"observedGeneration", 3.9e44},
                     {"numberAvailable", -1e300}}}};
  in.template_hash = "new";
  in.pods = {Pod("a", "new", true)};
  in.now = "2026-01-01T00:00:00Z";
  json tw = Tw(4);
  tw["metadata"]["generation"] = 18446744073709551615ull;
  json s = ComputeStatus(tw, in);
  EXPECT_EQ(s["observedGeneration"], 0);
  EXPECT_EQ(s["desiredNodes"], 0);
  EXPECT_EQ(s["readyNodes"], 1);
  in.daemon_set["status"]["desiredNumberScheduled"] = int64_t{1} << 40;
  EXPECT_EQ(ComputeStatus(Tw(4), in)["desiredNodes"], INT32_MAX);
}

TEST(StatusTest, AllReadyAndStableTransitionTimes) {
  StatusInputs in;
  in.daemon_set = Ds(2);
  in.template_hash = "h";
  in.pods = {Pod("a", "h", true), Pod("b", "h", true)};
  in.dram_per_node = uint64_t{8} << 30;
  in.socket_path = "/run/tokenwarehouse/default/pool/twd.sock";
  in.now = "2026-01-01T00:00:00Z";
  json first = ComputeStatus(Tw(1), in);
  EXPECT_EQ(first["phase"], "Ready");
  EXPECT_EQ(first["capacity"]["dram"], "16GiB");
  EXPECT_EQ(first["socketPath"], in.socket_path);
  EXPECT_EQ((*Cond(first, "AllNodesReady"))["status"], "True");
  EXPECT_EQ((*Cond(first, "Available"))["status"], "True");
  EXPECT_EQ((*Cond(first, "Progressing"))["status"], "False");
  // Recomputed later from the same world: identical (so it is not rewritten).
  in.now = "2026-01-01T01:00:00Z";
  json again = ComputeStatus(Tw(1, first), in);
  EXPECT_EQ(again, first);
  // A pod goes unready: AllNodesReady transitions and gets the new time.
  in.pods[1] = Pod("b", "h", false);
  json later = ComputeStatus(Tw(1, first), in);
  EXPECT_EQ((*Cond(later, "AllNodesReady"))["lastTransitionTime"], "2026-01-01T01:00:00Z");
  EXPECT_EQ((*Cond(later, "ConfigValid"))["lastTransitionTime"], "2026-01-01T00:00:00Z");
  EXPECT_EQ(later["phase"], "Degraded");
}

TEST(StatusTest, InvalidSpec) {
  StatusInputs in;
  in.config_valid = false;
  in.invalid_reason = "MemoryLimitTooLow";
  in.invalid_message = "too low";
  in.now = "2026-01-01T00:00:00Z";
  json s = ComputeStatus(Tw(2), in);
  EXPECT_EQ(s["phase"], "Invalid");
  const json* c = Cond(s, "ConfigValid");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ((*c)["status"], "False");
  EXPECT_EQ((*c)["reason"], "MemoryLimitTooLow");
  EXPECT_EQ((*c)["message"], "too low");
}

TEST(StatusTest, NotReadyListIsBounded) {
  StatusInputs in;
  in.daemon_set = Ds(200);
  in.template_hash = "h";
  for (int i = 0; i < 200; ++i) in.pods.push_back(Pod("n" + std::to_string(1000 + i), "h", false));
  in.now = "2026-01-01T00:00:00Z";
  json s = ComputeStatus(Tw(1), in);
  EXPECT_EQ(s["notReadyNodes"].size(), kMaxNotReadyNodes);
}

TEST(StatusTest, PendingWithoutNodes) {
  StatusInputs in;
  in.now = "2026-01-01T00:00:00Z";
  json s = ComputeStatus(Tw(1), in);
  EXPECT_EQ(s["phase"], "Pending");
  EXPECT_EQ((*Cond(s, "Available"))["status"], "False");
}

}  // namespace
}  // namespace tw::op
