// PagedKvCopier on the CPU backend: byte-exact save/load round trips for each of vLLM's paged
// layouts described as planes, block tables with holes and in reverse order, the number of
// merged copies, per-layer events completing in stream order, and the errors for bad layouts,
// tables and ranges.
#include "tw/gpu/paged_kv_copier.h"

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "tw/gpu/cpu_backend.h"

namespace tw::gpu {
namespace {

constexpr std::uint32_t kLayers = 3;
constexpr std::uint32_t kBlockSize = 4;    // tokens per block
constexpr std::uint64_t kTokenBytes = 48;  // heads × head_dim × dtype bytes, per plane
constexpr std::uint64_t kBlockBytes = kBlockSize * kTokenBytes;
constexpr std::uint64_t kNumBlocks = 12;

// How a test cache is laid out in its device allocation.
enum class Shape {
  kFlashAttn,   // per layer [2, num_blocks, block_size, ...]
  kFlashInfer,  // per layer [num_blocks, 2, block_size, ...]
  kMla,         // per layer [num_blocks, block_size, latent]
  kSeparateKv,  // per layer two tensors [num_blocks, block_size, ...]
  kCrossLayer,  // one tensor [num_blocks, layers, 2, block_size, ...]
};

std::string Name(Shape s) {
  switch (s) {
    case Shape::kFlashAttn:
      return "FlashAttn";
    case Shape::kFlashInfer:
      return "FlashInfer";
    case Shape::kMla:
      return "Mla";
    case Shape::kSeparateKv:
      return "SeparateKv";
    case Shape::kCrossLayer:
      return "CrossLayer";
  }
  return "?";
}

std::uint32_t PlanesOf(Shape s) { return s == Shape::kMla ? 1 : 2; }

// A device allocation holding a cache of `shape`, and its layout.
struct Cache {
  void* device = nullptr;
  std::uint64_t bytes = 0;
  KvLayout layout;
};

Cache MakeCache(Backend& b, Shape shape) {
  Cache c;
  const std::uint32_t planes = PlanesOf(shape);
  c.bytes = kLayers * planes * kNumBlocks * kBlockBytes;
  c.device = *b.AllocateDevice(c.bytes);
  c.layout = {.num_layers = kLayers,
              .planes_per_layer = planes,
              .plane_block_bytes = kBlockBytes,
              .block_size = kBlockSize,
              .num_blocks = kNumBlocks};
  const auto base = reinterpret_cast<std::uintptr_t>(c.device);
  const std::uint64_t layer_bytes = planes * kNumBlocks * kBlockBytes;
  for (std::uint32_t l = 0; l < kLayers; ++l) {
    for (std::uint32_t p = 0; p < planes; ++p) {
      KvPlane plane;
      switch (shape) {
        case Shape::kFlashAttn:
        case Shape::kSeparateKv:
        case Shape::kMla:
          plane = {base + l * layer_bytes + p * kNumBlocks * kBlockBytes, kBlockBytes};
          break;
        case Shape::kFlashInfer:
          plane = {base + l * layer_bytes + p * kBlockBytes, 2 * kBlockBytes};
          break;
        case Shape::kCrossLayer:
          plane = {base + (l * 2 + p) * kBlockBytes, kLayers * 2 * kBlockBytes};
          break;
      }
      c.layout.planes.push_back(plane);
    }
  }
  return c;
}

void Fill(void* p, std::uint64_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  auto* bytes = static_cast<std::uint8_t*>(p);
  for (std::uint64_t i = 0; i < n; ++i) bytes[i] = static_cast<std::uint8_t>(rng());
}

const std::uint8_t* BlockAt(const KvLayout& l, std::uint32_t layer, std::uint32_t p,
                            std::int32_t block) {
  const KvPlane& plane = l.plane(layer, p);
  return reinterpret_cast<const std::uint8_t*>(plane.base + block * plane.block_stride);
}

class PagedKvCopierTest : public ::testing::TestWithParam<Shape> {
 protected:
  void SetUp() override {
    backend_ = std::make_shared<CpuBackend>();
    stream_ = *backend_->CreateStream();
  }
  void TearDown() override { ASSERT_TRUE(backend_->DestroyStream(stream_).ok()); }

  std::shared_ptr<CpuBackend> backend_;
  Stream stream_{};
};

TEST_P(PagedKvCopierTest, SaveThenLoadIsByteExactWithHolesAndReversedBlocks) {
  const Shape shape = GetParam();
  Cache src = MakeCache(*backend_, shape);
  Cache dst = MakeCache(*backend_, shape);
  Fill(src.device, src.bytes, 1);
  Fill(dst.device, dst.bytes, 2);
  std::vector<std::uint8_t> before(static_cast<std::uint8_t*>(dst.device),
                                   static_cast<std::uint8_t*>(dst.device) + dst.bytes);

  // A run (3,4,5), a hole, a reversed pair (9,8), a lone block (0), a run (10,11).
  const std::vector<std::int32_t> save_table = {3, 4, 5, -1, 9, 8, 0, 10, 11};
  // The same chunk loaded into other blocks: reversed order, and the hole kept.
  const std::vector<std::int32_t> load_table = {11, 10, 9, -1, 1, 2, 3, 6, 7};
  auto save_copier = PagedKvCopier::Create(backend_, src.layout);
  auto load_copier = PagedKvCopier::Create(backend_, dst.layout);
  ASSERT_TRUE(save_copier.ok()) << save_copier.status().ToString();
  ASSERT_TRUE(load_copier.ok()) << load_copier.status().ToString();

  const std::uint64_t seg = src.layout.SegmentBytes(save_table.size());
  std::vector<std::uint8_t> arena(kLayers * seg + 100, 0xAB);
  // Layers stored out of order in the arena, as a scatter list may put them.
  const std::vector<std::uint64_t> offsets = {2 * seg + 100, 0, seg};
  auto saved = (*save_copier)
                   ->Start({.direction = KvDirection::kSave,
                            .block_table = save_table,
                            .host_base = arena.data(),
                            .host_size = arena.size(),
                            .layer_offsets = offsets,
                            .stream = stream_});
  ASSERT_TRUE(saved.ok()) << saved.status().ToString();
  ASSERT_TRUE((*saved)->Wait().ok());

  const std::uint32_t planes = PlanesOf(shape);
  const std::size_t n = save_table.size();
  for (std::uint32_t l = 0; l < kLayers; ++l) {
    for (std::uint32_t p = 0; p < planes; ++p) {
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint8_t* host = arena.data() + offsets[l] + (p * n + i) * kBlockBytes;
        if (save_table[i] < 0) {
          EXPECT_EQ(host[0], 0xAB) << "a hole was written";
          EXPECT_EQ(host[kBlockBytes - 1], 0xAB);
          continue;
        }
        ASSERT_EQ(std::memcmp(host, BlockAt(src.layout, l, p, save_table[i]), kBlockBytes), 0)
            << Name(shape) << " layer " << l << " plane " << p << " entry " << i;
      }
    }
  }

  auto loaded = (*load_copier)
                    ->Start({.direction = KvDirection::kLoad,
                             .block_table = load_table,
                             .host_base = arena.data(),
                             .host_size = arena.size(),
                             .layer_offsets = offsets,
                             .stream = stream_});
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_TRUE((*loaded)->Wait().ok());
  for (std::uint32_t l = 0; l < kLayers; ++l) {
    for (std::uint32_t p = 0; p < planes; ++p) {
      for (std::size_t i = 0; i < n; ++i) {
        if (load_table[i] < 0) continue;
        ASSERT_EQ(std::memcmp(BlockAt(dst.layout, l, p, load_table[i]),
                              BlockAt(src.layout, l, p, save_table[i]), kBlockBytes),
                  0)
            << Name(shape) << " layer " << l << " plane " << p << " entry " << i;
      }
    }
  }
  // Blocks not in the load table (0, 4, 5, 8) are untouched.
  for (std::int32_t untouched : {0, 4, 5, 8}) {
    for (std::uint32_t l = 0; l < kLayers; ++l) {
      for (std::uint32_t p = 0; p < planes; ++p) {
        const std::uint8_t* block = BlockAt(dst.layout, l, p, untouched);
        const std::uint64_t at = block - static_cast<std::uint8_t*>(dst.device);
        ASSERT_EQ(std::memcmp(block, before.data() + at, kBlockBytes), 0) << untouched;
      }
    }
  }
  ASSERT_TRUE(backend_->FreeDevice(src.device).ok());
  ASSERT_TRUE(backend_->FreeDevice(dst.device).ok());
}

TEST_P(PagedKvCopierTest, RunsOfBlocksAreMergedIntoOneCopyPerPlane) {
  const Shape shape = GetParam();
  Cache c = MakeCache(*backend_, shape);
  auto copier = PagedKvCopier::Create(backend_, c.layout);
  ASSERT_TRUE(copier.ok());
  const std::uint32_t planes = PlanesOf(shape);
  struct Case {
    std::vector<std::int32_t> table;
    std::uint64_t runs;
  };
  const std::vector<Case> cases = {
      {{2, 3, 4, 5, 6, 7, 8, 9}, 1},   // one run
      {{9, 8, 7, 6}, 4},               // reversed: one copy per block
      {{0, 1, 2, -1, 4, 5}, 2},        // a hole splits the run
      {{5, 6, 0, 1, 2, 10, 11, 3}, 4}  // scattered runs
  };
  for (const Case& k : cases) {
    std::vector<std::uint8_t> arena(kLayers * c.layout.SegmentBytes(k.table.size()));
    std::vector<std::uint64_t> offsets;
    for (std::uint32_t l = 0; l < kLayers; ++l) {
      offsets.push_back(l * c.layout.SegmentBytes(k.table.size()));
    }
    const std::uint64_t before = backend_->copies_queued();
    auto t = (*copier)->Start({.direction = KvDirection::kSave,
                               .block_table = k.table,
                               .host_base = arena.data(),
                               .host_size = arena.size(),
                               .layer_offsets = offsets,
                               .stream = stream_});
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    ASSERT_TRUE((*t)->Wait().ok());
    EXPECT_EQ((*t)->copies(), kLayers * planes * k.runs) << Name(shape);
    EXPECT_EQ(backend_->copies_queued() - before, (*t)->copies());
  }
  ASSERT_TRUE(backend_->FreeDevice(c.device).ok());
}

INSTANTIATE_TEST_SUITE_P(Layouts, PagedKvCopierTest,
                         ::testing::Values(Shape::kFlashAttn, Shape::kFlashInfer, Shape::kMla,
                                           Shape::kSeparateKv, Shape::kCrossLayer),
                         [](const auto& info) { return Name(info.param); });

// Holds a stream until released: the test sees the transfer queued and nothing done.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void Wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return open; });
  }
  void Open() {
    std::lock_guard lock(mu);
    open = true;
    cv.notify_all();
  }
};

TEST(PagedKvCopierEventsTest, LayerEventsCompleteInLayerOrder) {
  auto backend = std::make_shared<CpuBackend>();
  const Stream stream = *backend->CreateStream();
  Cache c = MakeCache(*backend, Shape::kFlashAttn);
  Fill(c.device, c.bytes, 3);
  auto copier = PagedKvCopier::Create(backend, c.layout);
  ASSERT_TRUE(copier.ok());
  const std::vector<std::int32_t> table = {0, 1, 2, 3};
  const std::uint64_t seg = c.layout.SegmentBytes(table.size());
  std::vector<std::uint8_t> arena(kLayers * seg);
  const std::vector<std::uint64_t> offsets = {0, seg, 2 * seg};

  Gate gate;
  ASSERT_TRUE(backend->LaunchHostFunc(stream, [&] { gate.Wait(); }).ok());
  auto t = (*copier)->Start({.direction = KvDirection::kLoad,
                             .block_table = table,
                             .host_base = arena.data(),
                             .host_size = arena.size(),
                             .layer_offsets = offsets,
                             .stream = stream});
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  for (std::uint32_t l = 0; l < kLayers; ++l) EXPECT_EQ((*t)->LayerDone(l).value_or(true), false);

  // A second stream made to wait for layer 1 sees layer 1's bytes in place.
  const Stream compute = *backend->CreateStream();
  ASSERT_TRUE((*t)->StreamWaitLayer(1, compute).ok());
  bool layer1_in_place = false;
  ASSERT_TRUE(backend
                  ->LaunchHostFunc(compute,
                                   [&] {
                                     layer1_in_place =
                                         std::memcmp(BlockAt(c.layout, 1, 1, 3),
                                                     arena.data() + seg + (4 + 3) * kBlockBytes,
                                                     kBlockBytes) == 0;
                                   })
                  .ok());
  gate.Open();
  // Whenever a layer is seen done, every earlier layer is done too (checked later, so it must
  // have completed first).
  std::vector<bool> seen(kLayers, false);
  while (!seen[kLayers - 1] || !seen[0]) {
    for (std::uint32_t l = kLayers; l-- > 0;) {
      auto done = (*t)->LayerDone(l);
      ASSERT_TRUE(done.ok()) << done.status().ToString();
      if (*done) {
        seen[l] = true;
        for (std::uint32_t j = 0; j < l; ++j) {
          EXPECT_EQ((*t)->LayerDone(j).value_or(false), true) << j << " after " << l;
        }
      }
    }
  }
  ASSERT_TRUE(backend->SynchronizeStream(compute).ok());
  EXPECT_TRUE(layer1_in_place);
  EXPECT_EQ((*t)->LayerDone(kLayers).status().code(), StatusCode::kInvalidArgument);
  // One layer at a time (vLLM saves per layer): layer 2 alone.
  auto one = (*copier)->Start({.direction = KvDirection::kSave,
                               .block_table = table,
                               .host_base = arena.data(),
                               .host_size = arena.size(),
                               .layer_offsets = std::span(offsets).subspan(2),
                               .first_layer = 2,
                               .stream = stream});
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_TRUE((*one)->WaitLayer(2).ok());
  EXPECT_EQ((*one)->WaitLayer(1).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(backend->DestroyStream(compute).ok());
  ASSERT_TRUE(backend->DestroyStream(stream).ok());
}

TEST(KvLayoutTest, BadLayoutsAreRefusedWithTheFieldNamed) {
  CpuBackend b;
  Cache good = MakeCache(b, Shape::kFlashInfer);
  ASSERT_TRUE(good.layout.Validate().ok()) << good.layout.Validate().ToString();
  struct Case {
    std::string want;
    std::function<void(KvLayout&)> edit;
  };
  const std::vector<Case> cases = {
      {"num_layers", [](KvLayout& l) { l.num_layers = 0; }},
      {"planes_per_layer", [](KvLayout& l) { l.planes_per_layer = 9; }},
      {"plane_block_bytes", [](KvLayout& l) { l.plane_block_bytes = 0; }},
      {"block_size", [](KvLayout& l) { l.block_size = 5; }},
      {"num_blocks", [](KvLayout& l) { l.num_blocks = 0; }},
      {"planes given", [](KvLayout& l) { l.planes.pop_back(); }},
      {"null device address", [](KvLayout& l) { l.planes[1].base = 0; }},
      {"shorter than a block", [](KvLayout& l) { l.planes[0].block_stride = kBlockBytes - 1; }},
      {"overflows", [](KvLayout& l) { l.planes[0].base = UINTPTR_MAX - 100; }},
      // V placed half a block after K: blocks of K and V share bytes.
      {"overlap", [](KvLayout& l) { l.planes[1].base = l.planes[0].base + kBlockBytes / 2; }},
      // Layer 1 placed over layer 0.
      {"overlap", [](KvLayout& l) { l.planes[2] = l.planes[0]; }},
      // A different stride whose span meets another plane's.
      {"overlap", [](KvLayout& l) { l.planes[1].block_stride = 3 * kBlockBytes; }},
  };
  for (const Case& k : cases) {
    KvLayout l = good.layout;
    k.edit(l);
    Status s = l.Validate();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << k.want;
    EXPECT_NE(s.message().find(k.want), std::string_view::npos) << s.ToString();
    EXPECT_FALSE(PagedKvCopier::Create(std::make_shared<CpuBackend>(), l).ok());
  }
  ASSERT_TRUE(b.FreeDevice(good.device).ok());
}

TEST(PagedKvCopierErrorsTest, BadTablesAndRangesFailBeforeAnythingIsQueued) {
  auto backend = std::make_shared<CpuBackend>();
  const Stream stream = *backend->CreateStream();
  Cache c = MakeCache(*backend, Shape::kFlashAttn);
  auto copier = PagedKvCopier::Create(backend, c.layout);
  ASSERT_TRUE(copier.ok());
  std::vector<std::uint8_t> arena(kLayers * c.layout.SegmentBytes(4));
  const std::uint64_t seg = c.layout.SegmentBytes(4);
  const std::vector<std::uint64_t> offsets = {0, seg, 2 * seg};
  const std::vector<std::int32_t> ok_table = {0, 1, 2, 3};
  KvTransferSpec base{.direction = KvDirection::kSave,
                      .block_table = ok_table,
                      .host_base = arena.data(),
                      .host_size = arena.size(),
                      .layer_offsets = offsets,
                      .stream = stream};
  auto expect = [&](KvTransferSpec spec, std::string_view want) {
    const std::uint64_t before = backend->copies_queued();
    auto t = (*copier)->Start(spec);
    ASSERT_FALSE(t.ok()) << want;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find(want), std::string_view::npos) << t.status().ToString();
    EXPECT_EQ(backend->copies_queued(), before);
  };
  const std::vector<std::int32_t> empty, out_of_range = {0, 12}, dup = {1, 2, 1, 3},
                                         negative = {0, -2, 1, 3};
  KvTransferSpec s = base;
  s.block_table = empty;
  expect(s, "no blocks");
  s.block_table = out_of_range;
  expect(s, "entry 1 is block 12");
  s.block_table = dup;
  expect(s, "block 1 appears twice");
  s.block_table = negative;
  expect(s, "entry 1 is block -2");
  s = base;
  s.host_size = arena.size() - 1;
  expect(s, "outside the host buffer");
  s = base;
  const std::vector<std::uint64_t> overlapping = {0, seg - 1, 2 * seg};
  s.layer_offsets = overlapping;
  expect(s, "overlap");
  s.direction = KvDirection::kLoad;  // a load may read one segment into several layers
  EXPECT_TRUE((*copier)->Start(s).ok());
  s = base;
  s.first_layer = 1;
  expect(s, "layers 1..3 are not in 0..2");
  s = base;
  s.layer_offsets = {};
  expect(s, "no layers");
  s = base;
  s.host_base = nullptr;
  expect(s, "no host buffer");
  ASSERT_TRUE(backend->SynchronizeStream(stream).ok());

  // A layout that names memory the backend never allocated fails when the copy runs, and the
  // failure comes back from the layer's event.
  KvLayout wild = c.layout;
  for (KvPlane& p : wild.planes) p.base += c.bytes + 4096;
  auto bad = PagedKvCopier::Create(backend, wild);
  ASSERT_TRUE(bad.ok());
  const Stream other = *backend->CreateStream();
  base.stream = other;
  auto t = (*bad)->Start(base);
  ASSERT_TRUE(t.ok());
  Status failed = (*t)->WaitLayer(0);
  EXPECT_EQ(failed.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(failed.message().find("not inside device memory"), std::string_view::npos)
      << failed.ToString();
  ASSERT_TRUE(backend->DestroyStream(other).ok());
  ASSERT_TRUE(backend->DestroyStream(stream).ok());
}

}  // namespace
}  // namespace tw::gpu
