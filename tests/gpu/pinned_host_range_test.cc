// PinnedHostRange on the CPU backend: an arena registered in slices while the object lives,
// unregistered when it goes, and a slice the backend refuses undoing the slices before it.
#include "tw/gpu/pinned_host_range.h"

#include <span>

#include "gtest/gtest.h"
#include "tw/gpu/cpu_backend.h"

namespace tw::gpu {
namespace {

TEST(PinnedHostRangeTest, RegistersInSlicesAndUnregistersOnDestruction) {
  auto backend = std::make_shared<CpuBackend>();
  alignas(4096) static char arena_storage[10 * 4096 + 7];
  std::span<char> arena(arena_storage, sizeof(arena_storage));
  {
    auto pinned = PinnedHostRange::Register(backend, arena.data(), arena.size(), 4096);
    ASSERT_TRUE(pinned.ok()) << pinned.status().ToString();
    EXPECT_EQ((*pinned)->slices(), 11u);
    EXPECT_EQ(backend->registered_ranges(), 11u);
    // Registered ranges cannot be registered again (as in CUDA).
    EXPECT_EQ(backend->RegisterHost(arena.data() + 4096, 10).code(), StatusCode::kAlreadyExists);
  }
  EXPECT_EQ(backend->registered_ranges(), 0u);
  // The default slice (1 GiB) covers a small arena in one call.
  auto whole = PinnedHostRange::Register(backend, arena.data(), arena.size());
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ((*whole)->slices(), 1u);
  EXPECT_EQ(backend->registered_ranges(), 1u);
}

TEST(PinnedHostRangeTest, AFailedSliceUndoesTheOthersAndIsNamed) {
  // The backend refuses ranges over 8 KiB in one call, as CUDA refuses very large ones.
  auto backend = std::make_shared<CpuBackend>(CpuBackend::Options{.max_register_bytes = 8192});
  alignas(4096) static char arena_storage[5 * 4096];
  std::span<char> arena(arena_storage, sizeof(arena_storage));
  auto ok = PinnedHostRange::Register(backend, arena.data(), arena.size(), 8192);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(backend->registered_ranges(), 3u);
  ok->reset();
  EXPECT_EQ(backend->registered_ranges(), 0u);
  // Slices of 12 KiB: the first is refused; nothing stays registered.
  auto failed = PinnedHostRange::Register(backend, arena.data(), arena.size(), 12288);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(failed.status().message().find("slice at offset 0"), std::string_view::npos)
      << failed.status().ToString();
  EXPECT_EQ(backend->registered_ranges(), 0u);
  // A partly registered range: the slice at 12 KiB already taken makes the second slice fail,
  // and the first is undone.
  ASSERT_TRUE(backend->RegisterHost(arena.data() + 3 * 4096, 4096).ok());
  auto partial = PinnedHostRange::Register(backend, arena.data(), arena.size(), 8192);
  ASSERT_FALSE(partial.ok());
  EXPECT_NE(partial.status().message().find("slice at offset 8192"), std::string_view::npos)
      << partial.status().ToString();
  EXPECT_EQ(backend->registered_ranges(), 1u);
  EXPECT_EQ(PinnedHostRange::Register(backend, nullptr, 10).status().code(),
            StatusCode::kInvalidArgument);
  // Slices that would share a page are refused before anything is registered.
  auto shared_page = PinnedHostRange::Register(backend, arena.data() + 1, 3 * 4096, 4096);
  EXPECT_EQ(shared_page.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(shared_page.status().message().find("4 KiB aligned"), std::string_view::npos);
  EXPECT_EQ(PinnedHostRange::Register(backend, arena.data(), 3 * 4096, 5000).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(backend->registered_ranges(), 1u);
}

}  // namespace
}  // namespace tw::gpu
