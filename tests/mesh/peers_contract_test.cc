// The peers file is a contract between tw-operator (which renders it) and twd (which parses
// it): the operator's own renderer's output must parse to the same peers.
#include <gtest/gtest.h>

#include "tw/mesh/membership.h"
#include "tw/operator/render.h"

namespace tw::mesh {
namespace {

TEST(PeersContract, WhatTheOperatorRendersTwdReads) {
  std::vector<tw::op::Peer> rendered = {
      {"node-b", "10.0.0.2", 7470}, {"node-a", "10.0.0.1", 7471}, {"node-c", "fd00::3", 1}};
  auto peers = ParsePeersJson(tw::op::RenderPeersJson(rendered));
  ASSERT_TRUE(peers.ok()) << peers.status().ToString();
  auto m = Membership::Create(*peers, 1);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->size(), 3u);
  for (const auto& r : rendered) {
    const Peer* p = m->Find(r.node);
    ASSERT_NE(p, nullptr) << r.node;
    EXPECT_EQ(p->address, r.address);
    EXPECT_EQ(p->port, r.port);
    EXPECT_EQ(p->weight, 1.0);
  }
}

TEST(PeersContract, NoReadyPodsIsAnEmptyMesh) {
  auto peers = ParsePeersJson(tw::op::RenderPeersJson({}));
  ASSERT_TRUE(peers.ok()) << peers.status().ToString();
  EXPECT_TRUE(peers->empty());
}

}  // namespace
}  // namespace tw::mesh
