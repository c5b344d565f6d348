// SoftVerbs keeps the verbs rules the RDMA transport relies on, and StagingRing hands out,
// merges and waits for space as documented.
#include "tw/mesh/rdma/soft_verbs.h"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

#include "tw/mesh/rdma/staging_ring.h"

namespace tw::mesh::rdma {
namespace {

using namespace std::chrono_literals;

struct Side {
  std::unique_ptr<Verbs> v;
  PdHandle pd;
  CqHandle cq;
  QpHandle qp;
  uint32_t qpn = 0;
};

class SoftVerbsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto* s : {&a_, &b_}) {
      s->v = fabric_.OpenDevice(s == &a_ ? "a" : "b");
      s->pd = *s->v->AllocPd();
      s->cq = *s->v->CreateCq(64);
      s->qp = *s->v->CreateQp(s->pd, s->cq, 4, &s->qpn);
    }
    src_.assign(8192, std::byte{0x42});
    dst_.assign(8192, std::byte{0});
    src_mr_ = *b_.v->RegMr(b_.pd, src_.data(), src_.size(), kRemoteRead);
    dst_mr_ = *a_.v->RegMr(a_.pd, dst_.data(), dst_.size(), kLocalWrite);
  }

  void Connect() {
    for (auto* s : {&a_, &b_}) {
      Side* o = s == &a_ ? &b_ : &a_;
      ASSERT_TRUE(s->v->ModifyQpToInit(s->qp).ok());
      ASSERT_TRUE(
          s->v->ModifyQpToRtr(s->qp, QpEndpoint{o->qpn, 0, o->v->port().gid, 7, 4096}).ok());
      ASSERT_TRUE(s->v->ModifyQpToRts(s->qp, 7).ok());
    }
  }

  ReadRequest Read(uint64_t id, uint32_t len = 4096, uint64_t remote_off = 0) {
    return ReadRequest{id,
                       reinterpret_cast<uint64_t>(dst_.data()),
                       dst_mr_.lkey,
                       len,
                       reinterpret_cast<uint64_t>(src_.data()) + remote_off,
                       src_mr_.rkey};
  }

  std::vector<Completion> Poll(Side& s) {
    std::vector<Completion> out(16);
    auto n = s.v->PollCq(s.cq, out);
    out.resize(n.ok() ? *n : 0);
    return out;
  }

  SoftFabric fabric_;
  Side a_, b_;
  std::vector<std::byte> src_, dst_;
  MemoryRegion src_mr_, dst_mr_;
};

TEST_F(SoftVerbsTest, ReadMovesBytesAndCompletesOnTheQueuePairsCq) {
  Connect();
  ASSERT_TRUE(a_.v->PostRead(a_.qp, Read(1)).ok());
  ASSERT_TRUE(a_.v->WaitCq(a_.cq, 1s).ok());
  auto c = Poll(a_);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].wr_id, 1u);
  EXPECT_EQ(c[0].status, WcStatus::kSuccess);
  EXPECT_EQ(c[0].qpn, a_.qpn);
  EXPECT_EQ(dst_[4095], std::byte{0x42});
  EXPECT_EQ(dst_[4096], std::byte{0});
  EXPECT_TRUE(Poll(b_).empty());
}

TEST_F(SoftVerbsTest, QueuePairStateRules) {
  EXPECT_EQ(a_.v->PostRead(a_.qp, Read(1)).code(), StatusCode::kFailedPrecondition);  // RESET
  EXPECT_EQ(a_.v->ModifyQpToRts(a_.qp, 1).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(a_.v->ModifyQpToInit(a_.qp).ok());
  EXPECT_EQ(a_.v->PostRead(a_.qp, Read(1)).code(), StatusCode::kFailedPrecondition);  // INIT
  ASSERT_TRUE(a_.v->ModifyQpToRtr(a_.qp, QpEndpoint{b_.qpn, 0, b_.v->port().gid, 1, 4096}).ok());
  EXPECT_EQ(a_.v->PostRead(a_.qp, Read(1)).code(), StatusCode::kFailedPrecondition);  // RTR
  EXPECT_TRUE(Poll(a_).empty());
}

TEST_F(SoftVerbsTest, RemoteAccessErrorMovesBothSidesToErrorAndFlushesLaterWork) {
  Connect();
  ReadRequest bad = Read(1);
  bad.rkey ^= 1;
  ASSERT_TRUE(a_.v->PostRead(a_.qp, bad).ok());
  ASSERT_TRUE(a_.v->PostRead(a_.qp, Read(2)).ok());
  auto c = Poll(a_);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].status, WcStatus::kRemoteAccessError);
  EXPECT_EQ(c[1].status, WcStatus::kFlushed);
  EXPECT_EQ(dst_[0], std::byte{0});  // nothing written by failed work
  // The responder's queue pair failed too: a READ from b to a now gets no answer.
  std::vector<std::byte> b_dst(4096);
  auto b_mr = *b_.v->RegMr(b_.pd, b_dst.data(), b_dst.size(), kLocalWrite);
  ASSERT_TRUE(b_.v->PostRead(b_.qp, ReadRequest{9, reinterpret_cast<uint64_t>(b_dst.data()),
                                                b_mr.lkey, 16, 0, 0})
                  .ok());
  c = Poll(b_);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].status, WcStatus::kFlushed);
}

TEST_F(SoftVerbsTest, BoundsAccessRightsAndLocalKeysAreChecked) {
  Connect();
  ASSERT_TRUE(a_.v->PostRead(a_.qp, Read(1, 4096, 8192 - 100)).ok());  // past the region
  EXPECT_EQ(Poll(a_).at(0).status, WcStatus::kRemoteAccessError);

  // A region registered without remote read rights refuses READs.
  std::vector<std::byte> no_read(4096);
  auto mr = *b_.v->RegMr(b_.pd, no_read.data(), no_read.size(), kLocalWrite);
  for (auto* s : {&a_, &b_}) {
    s->v->ModifyQpToError(s->qp).IgnoreError();
    s->v->DestroyQp(s->qp).IgnoreError();
    s->qp = *s->v->CreateQp(s->pd, s->cq, 4, &s->qpn);
  }
  Poll(a_);
  Connect();
  ReadRequest r = Read(2);
  r.remote_addr = reinterpret_cast<uint64_t>(no_read.data());
  r.rkey = mr.rkey;
  ASSERT_TRUE(a_.v->PostRead(a_.qp, r).ok());
  EXPECT_EQ(Poll(a_).at(0).status, WcStatus::kRemoteAccessError);
}

TEST_F(SoftVerbsTest, StallHoldsWorkUntilClearedOrFlushedByError) {
  Connect();
  fabric_.SetFault("b", SoftFabric::Fault::kStall);
  ASSERT_TRUE(a_.v->PostRead(a_.qp, Read(1)).ok());
  EXPECT_TRUE(Poll(a_).empty());
  EXPECT_EQ(fabric_.counters("a").reads_held, 1u);
  fabric_.SetFault("b", SoftFabric::Fault::kNone);
  EXPECT_EQ(Poll(a_).at(0).status, WcStatus::kSuccess);

  std::fill(dst_.begin(), dst_.end(), std::byte{0});
  fabric_.SetFault("b", SoftFabric::Fault::kStall);
  ASSERT_TRUE(a_.v->PostRead(a_.qp, Read(2)).ok());
  ASSERT_TRUE(a_.v->PostRead(a_.qp, Read(3)).ok());
  ASSERT_TRUE(a_.v->ModifyQpToError(a_.qp).ok());
  auto c = Poll(a_);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].status, WcStatus::kFlushed);
  EXPECT_EQ(c[1].status, WcStatus::kFlushed);
  fabric_.SetFault("b", SoftFabric::Fault::kNone);
  EXPECT_EQ(dst_[0], std::byte{0});  // flushed work never runs
  EXPECT_TRUE(Poll(a_).empty());
}

TEST_F(SoftVerbsTest, AReadWaitsForARemoteQueuePairNotReadyYet) {
  ASSERT_TRUE(a_.v->ModifyQpToInit(a_.qp).ok());
  ASSERT_TRUE(a_.v->ModifyQpToRtr(a_.qp, QpEndpoint{b_.qpn, 0, b_.v->port().gid, 1, 4096}).ok());
  ASSERT_TRUE(a_.v->ModifyQpToRts(a_.qp, 1).ok());
  ASSERT_TRUE(b_.v->ModifyQpToInit(b_.qp).ok());
  ASSERT_TRUE(a_.v->PostRead(a_.qp, Read(1)).ok());
  EXPECT_TRUE(Poll(a_).empty());  // the hardware would be retrying
  ASSERT_TRUE(b_.v->ModifyQpToRtr(b_.qp, QpEndpoint{a_.qpn, 0, a_.v->port().gid, 1, 4096}).ok());
  auto c = Poll(a_);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].status, WcStatus::kSuccess);

  // A target that fails instead of becoming ready: the READ gives up.
  uint32_t qpn = 0;
  QpHandle other = *b_.v->CreateQp(b_.pd, b_.cq, 4, &qpn);
  ASSERT_TRUE(b_.v->ModifyQpToInit(other).ok());
  ASSERT_TRUE(a_.v->ModifyQpToError(a_.qp).ok());
  ASSERT_TRUE(a_.v->DestroyQp(a_.qp).ok());
  a_.qp = *a_.v->CreateQp(a_.pd, a_.cq, 4, &a_.qpn);
  ASSERT_TRUE(a_.v->ModifyQpToInit(a_.qp).ok());
  ASSERT_TRUE(a_.v->ModifyQpToRtr(a_.qp, QpEndpoint{qpn, 0, b_.v->port().gid, 1, 4096}).ok());
  ASSERT_TRUE(a_.v->ModifyQpToRts(a_.qp, 1).ok());
  ASSERT_TRUE(a_.v->PostRead(a_.qp, Read(2)).ok());
  EXPECT_TRUE(Poll(a_).empty());
  ASSERT_TRUE(b_.v->DestroyQp(other).ok());
  c = Poll(a_);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].status, WcStatus::kRetryExceeded);
}

TEST_F(SoftVerbsTest, DeadPeerGivesRetryExceededAndSendQueueDepthIsEnforced) {
  Connect();
  fabric_.SetFault("b", SoftFabric::Fault::kStall);
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(a_.v->PostRead(a_.qp, Read(i)).ok());
  EXPECT_EQ(a_.v->PostRead(a_.qp, Read(5)).code(), StatusCode::kResourceExhausted);
  fabric_.SetFault("b", SoftFabric::Fault::kDead);
  auto c = Poll(a_);
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(c[0].status, WcStatus::kRetryExceeded);
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(c[i].status, WcStatus::kFlushed);
  EXPECT_EQ(fabric_.counters("b").qps_live, 0u);
  EXPECT_EQ(b_.v->AllocPd().status().code(), StatusCode::kUnavailable);
}

TEST(StagingRingTest, AllocatesMergesAndWaitsForSpace) {
  SoftFabric fabric;
  auto v = fabric.OpenDevice("n");
  PdHandle pd = *v->AllocPd();
  auto ring = std::move(*StagingRing::Create(v.get(), pd, 64 * 1024, kLocalWrite, "test ring"));
  EXPECT_EQ(ring->capacity(), 64u * 1024);
  auto a = *ring->Allocate(10, Deadline::max());
  auto b = *ring->Allocate(32 * 1024, Deadline::max());
  auto c = *ring->Allocate(20 * 1024, Deadline::max());
  EXPECT_EQ(ring->used(), 4096u + 32 * 1024 + 20 * 1024);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data) % StagingRing::kAlign, 0u);
  EXPECT_EQ(b.data - a.data, 4096);
  auto full = ring->Allocate(16 * 1024, Clock::now() + 10ms);
  EXPECT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.status().ToString().find("staging ring full"), std::string::npos);
  EXPECT_EQ(ring->Allocate(65 * 1024, Deadline::max()).status().code(),
            StatusCode::kResourceExhausted);
  // Freed out of order, the pieces merge back into one extent.
  ring->Free(a);
  ring->Free(c);
  ring->Free(b);
  EXPECT_EQ(ring->used(), 0u);
  auto whole = *ring->Allocate(64 * 1024, Deadline::max());
  // A waiter gets space when it is freed.
  std::thread t([&] { ring->Free(whole); });
  auto later = ring->Allocate(1024, Clock::now() + 30s);
  t.join();
  ASSERT_TRUE(later.ok());
  ring->Free(*later);
}

}  // namespace
}  // namespace tw::mesh::rdma
