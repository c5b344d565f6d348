// The RDMA transport on a real device (loopback on one port). Runs where ibv_get_device_list
// finds a device with an ACTIVE port; elsewhere it skips and says what it needs.
// TW_RDMA_DEVICE picks the device (default: the first with an ACTIVE port).
// scripts/rdma-check.sh lists the machine's devices and runs this test.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

#include "fake_clock.h"
#include "rdma_test_util.h"
#include "tw/mesh/rdma/ib_verbs.h"
#include "tw/mesh/rdma/in_process_control.h"
#include "tw/mesh/rdma/rdma_transport.h"

namespace tw::mesh::rdma {
namespace {

using ::tw::mesh::testing::MemChunkSource;
using ::tw::mesh::testing::Pattern;
using ::tw::mesh::testing::TestKey;
using namespace std::chrono_literals;

std::string Device() {
  const char* d = std::getenv("TW_RDMA_DEVICE");
  return d ? d : "";
}

// Skips the test unless a device with an ACTIVE port can be opened.
#define TW_REQUIRE_RDMA_DEVICE()                                                       \
  do {                                                                                 \
    auto probe = OpenIbVerbs(Device());                                                \
    if (!probe.ok()) {                                                                 \
      GTEST_SKIP() << "needs an RDMA device with an ACTIVE port (InfiniBand or RoCE; " \
                      "soft-RoCE counts), and the permission to open it: "             \
                   << probe.status().ToString();                                       \
    }                                                                                  \
  } while (0)

TEST(RdmaDeviceTest, ListsDevices) {
  auto devs = ListIbDevices();
  ASSERT_TRUE(devs.ok()) << devs.status().ToString();
  if (devs->empty()) GTEST_SKIP() << "no RDMA device: ibv_get_device_list found none";
  for (const auto& d : *devs) {
    for (const auto& p : d.ports) {
      std::cout << d.name << " port " << int(p.port) << " " << p.state << " " << p.link_layer
                << " mtu " << p.active_mtu << " lid " << p.lid << "\n";
    }
  }
}

// Two queue pairs on the same port connected to each other; one READs a registered buffer.
TEST(RdmaDeviceTest, LoopbackReadBetweenTwoQueuePairs) {
  TW_REQUIRE_RDMA_DEVICE();
  auto v = std::move(*OpenIbVerbs(Device()));
  std::cout << "device " << v->port().device << " port " << int(v->port().port) << " gid index "
            << int(v->port().gid_index) << " mtu " << v->port().mtu << "\n";
  PdHandle pd = *v->AllocPd();
  CqHandle cq = *v->CreateCq(64);
  uint32_t qpn1 = 0, qpn2 = 0;
  QpHandle q1 = *v->CreateQp(pd, cq, 16, &qpn1);
  QpHandle q2 = *v->CreateQp(pd, cq, 16, &qpn2);
  const PortInfo& port = v->port();
  ASSERT_TRUE(v->ModifyQpToInit(q1).ok());
  ASSERT_TRUE(v->ModifyQpToInit(q2).ok());
  Status st = v->ModifyQpToRtr(q1, QpEndpoint{qpn2, port.lid, port.gid, 200, port.mtu});
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE(v->ModifyQpToRtr(q2, QpEndpoint{qpn1, port.lid, port.gid, 100, port.mtu}).ok());
  ASSERT_TRUE(v->ModifyQpToRts(q1, 100).ok());
  ASSERT_TRUE(v->ModifyQpToRts(q2, 200).ok());

  const size_t n = 4 << 20;
  auto src = Pattern(77, n);
  std::vector<std::byte> dst(n);
  auto src_mr = *v->RegMr(pd, src.data(), n, kRemoteRead);
  auto dst_mr = *v->RegMr(pd, dst.data(), n, kLocalWrite);
  ASSERT_TRUE(v->PostRead(q1, ReadRequest{1, reinterpret_cast<uint64_t>(dst.data()), dst_mr.lkey,
                                          static_cast<uint32_t>(n),
                                          reinterpret_cast<uint64_t>(src.data()), src_mr.rkey})
                  .ok());
  Completion c[4];
  size_t got = 0;
  auto until = Clock::now() + 10s;
  while (got == 0 && Clock::now() < until) {
    got = *v->PollCq(cq, c);
    if (got == 0) v->WaitCq(cq, 100ms).IgnoreError();
  }
  ASSERT_EQ(got, 1u) << "no completion within 10 s";
  EXPECT_EQ(c[0].status, WcStatus::kSuccess) << ToString(c[0].status);
  EXPECT_EQ(0, std::memcmp(src.data(), dst.data(), n));

  for (QpHandle q : {q1, q2}) ASSERT_TRUE(v->DestroyQp(q).ok());
  ASSERT_TRUE(v->DeregMr(src_mr.handle).ok());
  ASSERT_TRUE(v->DeregMr(dst_mr.handle).ok());
  ASSERT_TRUE(v->DestroyCq(cq).ok());
  ASSERT_TRUE(v->DeallocPd(pd).ok());
}

// Two RdmaTransports on the same device, the control plane in process: a full fetch.
TEST(RdmaDeviceTest, TransportLoopbackFetch) {
  TW_REQUIRE_RDMA_DEVICE();
  InProcessControl control;
  MemChunkSource src_a, src_b;
  RdmaOptions o;
  o.holder_staging_bytes = 64 << 20;
  o.staging_bytes = 64 << 20;
  o.node_name = "a";
  auto a =
      std::move(*RdmaTransport::Create(o, std::move(*OpenIbVerbs(Device())), &control, &src_a));
  o.node_name = "b";
  auto b =
      std::move(*RdmaTransport::Create(o, std::move(*OpenIbVerbs(Device())), &control, &src_b));
  control.AddNode("a", a.get());
  control.AddNode("b", b.get());
  const size_t n = 32 << 20;
  FetchSpec spec{TestKey(1), TestKey(2)};
  src_b.Put(spec, Pattern(5, n), {n});
  std::vector<std::byte> dest(n);
  ASSERT_TRUE(a->RegisterMemory(dest.data(), n).ok());
  auto t0 = Clock::now();
  FetchResult r = a->Fetch(Peer{"b", "127.0.0.1", 7470, 1.0}, spec, dest, Clock::now() + 10s);
  auto dt = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_EQ(r.miss, MissReason::kNone) << r.error.ToString();
  EXPECT_EQ(0, std::memcmp(dest.data(), Pattern(5, n).data(), n));
  std::cout << "32 MiB fetch (holder copy + READ) in " << dt * 1e3 << " ms\n";
  a->UnregisterMemory(dest.data());
  control.RemoveNode("a");
  control.RemoveNode("b");
}

}  // namespace
}  // namespace tw::mesh::rdma
