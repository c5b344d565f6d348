// NvmeEngine on a fault-injecting device: what its committer does when the device fails under
// it. The journal holds one region at a time, so the commits of later regions wait for the
// oldest region's seal; a seal that keeps failing must fail them, not hold their puts forever.
#include "nvme_engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <vector>

#include "aligned_buffer.h"
#include "metadata_format.h"
#include "store_test_util.h"

namespace tw::store {
namespace {

using namespace testing;  // store_test_util.h
constexpr char kPath[] = "/dev/seal0";

SummaryEntry EntryFor(const NvmeEngine::Allocation& a, uint64_t id) {
  SummaryEntry e;
  e.key = MakeChunk(id, {4096}).info.key;
  e.offset = a.offset;
  e.region = a.region;
  e.seq = a.seq;
  e.epoch = a.epoch;
  e.record_4k = uint32_t(a.length / 4096);
  e.header_len = 4096;
  return e;
}

TEST(NvmeEngineTest, CommitsHeldBehindAFailingSealFailInsteadOfWaiting) {
  auto f = std::make_shared<FaultDeviceFactory>();
  NvmeEngine::Options o;
  o.config.paths.push_back({kPath, 64 * MiB});
  o.config.region_size = 1 * MiB;
  o.config.stripe_unit = 128 * KiB;
  o.factory = f;
  std::vector<SummaryEntry> recovered;
  auto opened = NvmeEngine::Open(o, &recovered);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  NvmeEngine& e = **opened;

  // A committed record in the first region: sealing that region writes its summary. A second
  // record there, written but not yet committed, keeps the region from being sealed.
  AlignedBuffer buf(4096);
  auto a1 = e.Allocate(4096);
  ASSERT_TRUE(a1.ok()) << a1.status().ToString();
  ASSERT_TRUE(e.Write(*a1, buf.data()).ok());
  ASSERT_TRUE(e.Commit(*a1, EntryFor(*a1, 1), /*wait=*/true).ok());
  auto a1b = e.Allocate(4096);
  ASSERT_TRUE(a1b.ok()) << a1b.status().ToString();
  ASSERT_TRUE(e.Write(*a1b, buf.data()).ok());

  // Records until one lands past the first region, which then closes (those that still fit
  // are given up at once).
  std::optional<NvmeEngine::Allocation> a2;
  for (int i = 0; i < 64 && !a2; ++i) {
    auto a = e.Allocate(64 * KiB);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    if (a->region == a1->region) {
      e.Abort(*a);
    } else {
      a2 = *a;
    }
  }
  ASSERT_TRUE(a2.has_value()) << "no record left the first region";

  // The device dies; the second record's commit waits behind the first region's seal, which
  // can start once the record in flight there is given up, and fails from then on.
  auto state = f->state(kPath);
  state->SetFailAll(true);
  std::future<Status> done = e.CommitAsync(*a2, EntryFor(*a2, 2));
  e.Abort(*a1b);
  // Generous: the committer retries the seal every 100 ms; before the fix it waited forever.
  ASSERT_EQ(done.wait_for(std::chrono::seconds(30)), std::future_status::ready)
      << "a commit held behind a failing seal never finished";
  EXPECT_FALSE(done.get().ok());
  state->Revive();
}

// A superblock whose checksum is valid but whose geometry is not (another program's bug,
// tampering): Open refuses it as data loss instead of dividing by a zero region size or
// reading past the device (found by the store_metadata fuzz target's geometry check).
TEST(NvmeEngineTest, OpenRefusesAChecksummedSuperblockWithImpossibleGeometry) {
  auto f = std::make_shared<FaultDeviceFactory>();
  NvmeEngine::Options o;
  o.config.paths.push_back({kPath, 64 * MiB});
  o.config.region_size = 1 * MiB;
  o.config.stripe_unit = 128 * KiB;
  o.factory = f;
  std::vector<SummaryEntry> recovered;
  {
    auto opened = NvmeEngine::Open(o, &recovered);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  }
  // The device is opened only between engine runs: an open device holds the path's lock.
  AlignedBuffer blocks(2 * kBlock);
  Superblock good;
  {
    auto dev = f->Open(o.config.paths[0], 8);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    ASSERT_TRUE((*dev)->Read(0, blocks.data(), 2 * kBlock).ok());
  }
  ASSERT_EQ(DecodeSuperblock(blocks.data() + kBlock, &good), SuperblockCheck::kValid);
  EXPECT_TRUE(ValidateSuperblock(good, 64 * MiB).ok());
  EXPECT_FALSE(ValidateSuperblock(good, 8 * MiB).ok());  // the data area ends past the path

  auto rewrite = [&](const Superblock& sb) {
    for (uint64_t copy = 0; copy < 2; ++copy) {
      EncodeSuperblock(sb, blocks.data() + copy * kBlock);
    }
    auto dev = f->Open(o.config.paths[0], 8);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    ASSERT_TRUE((*dev)->Write(0, blocks.data(), 2 * kBlock).ok());
    ASSERT_TRUE((*dev)->Sync().ok());
  };
  for (int field = 0; field < 4; ++field) {
    Superblock bad = good;
    if (field == 0) bad.region_size = 0;
    if (field == 1) bad.stripe_unit = 0;
    if (field == 2) bad.region_count = UINT32_MAX;
    if (field == 3) bad.per_device_data = UINT64_MAX - 4095;
    rewrite(bad);
    auto reopened = NvmeEngine::Open(o, &recovered);
    ASSERT_FALSE(reopened.ok()) << field;
    EXPECT_EQ(reopened.status().code(), StatusCode::kDataLoss) << reopened.status().ToString();
  }
  rewrite(good);
  auto again = NvmeEngine::Open(o, &recovered);
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

}  // namespace
}  // namespace tw::store
