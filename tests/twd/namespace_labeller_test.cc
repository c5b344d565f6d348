#include "namespace_labeller.h"

#include <gtest/gtest.h>

#include <set>

namespace tw::twd {
namespace {

using std::chrono::seconds;

Key Ns(int i) {
  Key k;
  k.bytes[0] = static_cast<uint8_t>(i);
  k.bytes[1] = static_cast<uint8_t>(i >> 8);
  k.bytes[2] = 0x5a;
  return k;
}

class NamespaceLabellerTest : public ::testing::Test {
 protected:
  NamespaceLabeller::Clock::time_point now_{};
  NamespaceLabeller Make(uint32_t max) {
    return NamespaceLabeller(max, seconds(60), [this] { return now_; });
  }
  void Advance() { now_ += seconds(61); }
};

TEST_F(NamespaceLabellerTest, FirstComeLabelsUntilTheFirstInterval) {
  NamespaceLabeller l = Make(2);
  EXPECT_EQ(l.Count(Ns(1), 1), Ns(1).Hex().substr(0, 16));
  EXPECT_EQ(l.Count(Ns(2), 1), Ns(2).Hex().substr(0, 16));
  EXPECT_EQ(l.Count(Ns(3), 1), "other");
  EXPECT_EQ(l.labelled(), 2u);
}

TEST_F(NamespaceLabellerTest, BusiestNamespacesTakeTheLabels) {
  NamespaceLabeller l = Make(2);
  // Two quiet namespaces arrive first and take the labels...
  l.Count(Ns(1), 1);
  l.Count(Ns(2), 1);
  // ...then two busy ones carry almost all the traffic.
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(l.Count(Ns(3), 1), "other");
    l.Count(Ns(4), 1);
  }
  Advance();
  EXPECT_EQ(l.Label(Ns(3)), Ns(3).Hex().substr(0, 16));
  EXPECT_EQ(l.Label(Ns(4)), Ns(4).Hex().substr(0, 16));
  EXPECT_EQ(l.Label(Ns(1)), "other");
  EXPECT_EQ(l.Label(Ns(2)), "other");
  EXPECT_EQ(l.labelled(), 2u);
}

TEST_F(NamespaceLabellerTest, LabelsDoNotFlapBetweenCloseRivals) {
  NamespaceLabeller l = Make(1);
  for (int i = 0; i < 100; ++i) l.Count(Ns(1), 1);
  Advance();
  l.Label(Ns(1));  // re-pick: Ns(1) holds the label
  ASSERT_EQ(l.Label(Ns(1)), Ns(1).Hex().substr(0, 16));
  // A rival slightly busier than the holder does not take the label...
  for (int i = 0; i < 100; ++i) l.Count(Ns(1), 1);
  for (int i = 0; i < 160; ++i) l.Count(Ns(2), 1);
  Advance();
  EXPECT_EQ(l.Label(Ns(1)), Ns(1).Hex().substr(0, 16));
  EXPECT_EQ(l.Label(Ns(2)), "other");
  // ...a clear winner does.
  for (int i = 0; i < 2000; ++i) l.Count(Ns(2), 1);
  Advance();
  EXPECT_EQ(l.Label(Ns(2)), Ns(2).Hex().substr(0, 16));
  EXPECT_EQ(l.Label(Ns(1)), "other");
}

TEST_F(NamespaceLabellerTest, QuietNamespacesGiveTheirLabelsUp) {
  NamespaceLabeller l = Make(1);
  l.Count(Ns(1), 4);
  Advance();
  l.Label(Ns(1));
  EXPECT_EQ(l.labelled(), 1u);
  // With no traffic its score halves each interval until it falls below one chunk.
  for (int i = 0; i < 4; ++i) {
    Advance();
    l.Label(Ns(9));
  }
  EXPECT_EQ(l.labelled(), 0u);
  l.Count(Ns(2), 3);
  Advance();
  EXPECT_EQ(l.Label(Ns(2)), Ns(2).Hex().substr(0, 16));
}

TEST_F(NamespaceLabellerTest, CardinalityAndMemoryStayBounded) {
  NamespaceLabeller l = Make(4);
  std::set<std::string> labels;
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 500; ++i) labels.insert(l.Count(Ns(round * 500 + i), 1 + i % 7));
    EXPECT_LE(l.tracked(),
              NamespaceLabeller::kCandidatesPerLabel * 4 + NamespaceLabeller::kSpareCandidates);
    Advance();
    EXPECT_LE(l.labelled(), 4u);
  }
  EXPECT_TRUE(labels.contains("other"));
  // 10,000 distinct namespaces came by; far fewer distinct labels were ever handed out.
  EXPECT_LT(labels.size(), 100u);
}

TEST_F(NamespaceLabellerTest, LoweringTheCapDemotesTheWeakest) {
  NamespaceLabeller l = Make(3);
  for (int n = 1; n <= 3; ++n) l.Count(Ns(n), 10 * n);
  EXPECT_EQ(l.labelled(), 3u);
  l.SetMax(1);
  Advance();
  EXPECT_EQ(l.Label(Ns(3)), Ns(3).Hex().substr(0, 16));
  EXPECT_EQ(l.Label(Ns(1)), "other");
  EXPECT_EQ(l.labelled(), 1u);
}

}  // namespace
}  // namespace tw::twd
