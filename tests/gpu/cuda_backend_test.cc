// CudaBackend without a GPU: it refuses to start with the loader's reason, and over the fake
// runtime built by the tests it maps calls and cudaError_t values as documented. Real copies
// through CUDA need a GPU machine (not built yet: scripts/gpu-check.sh).
#include "tw/gpu/cuda_backend.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace tw::gpu {
namespace {

bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

TEST(CudaBackendTest, RefusesToStartWhenTheGpuPathIsOff) {
  char tmpl[] = "/tmp/tw_gpu_backend_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  CudaLibraries libs = CudaLibraries::Load({.search_dirs = {dir}});
  std::filesystem::remove_all(dir);
  auto backend = CudaBackend::Create(libs);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(backend.status().message(), "libcudart.so.12 not found"))
      << backend.status().ToString();
}

class FakeCudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("TW_FAKE_CUDA_ERROR", "0", 1);
    libs_ =
        std::make_unique<CudaLibraries>(CudaLibraries::Load({.search_dirs = {TW_FAKE_CUDART_DIR}}));
    ASSERT_TRUE(libs_->availability().cuda.ok()) << libs_->availability().cuda.ToString();
  }
  void TearDown() override { ::unsetenv("TW_FAKE_CUDA_ERROR"); }
  std::unique_ptr<CudaLibraries> libs_;
};

TEST_F(FakeCudaBackendTest, MapsCallsAndErrors) {
  EXPECT_EQ(CudaBackend::Create(*libs_, 2).status().code(), StatusCode::kInvalidArgument);
  auto backend = CudaBackend::Create(*libs_, 1);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  Backend& b = **backend;
  EXPECT_EQ(b.name(), "cuda");
  // The fake's cudaMallocHost fails with cudaErrorMemoryAllocation (2).
  auto host = b.AllocateHost(64);
  EXPECT_EQ(host.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(host.status().message(), "cudaMallocHost: error 2 (cudaErrorFake"))
      << host.status().ToString();
  auto stream = b.CreateStream();
  ASSERT_TRUE(stream.ok());
  EXPECT_NE(static_cast<std::uintptr_t>(*stream), 0u);
  bool ran = false;
  ASSERT_TRUE(b.LaunchHostFunc(*stream, [&] { ran = true; }).ok());
  EXPECT_TRUE(ran);  // the fake runs host functions at once; the wrapper is freed after
  auto event = b.CreateEvent();
  ASSERT_TRUE(event.ok());
  ASSERT_TRUE(b.RecordEvent(*event, *stream).ok());
  EXPECT_EQ(b.QueryEvent(*event).value_or(false), true);
  char dst[8], src[8] = {};
  EXPECT_TRUE(b.CopyAsync(dst, src, sizeof(dst), CopyKind::kHostToDevice, *stream).ok());
  EXPECT_TRUE(b.SynchronizeStream(*stream).ok());
  EXPECT_EQ(b.ReadFile(0, dst, 8, 0).status().code(), StatusCode::kUnimplemented);
  EXPECT_TRUE(b.DestroyEvent(*event).ok());
  EXPECT_TRUE(b.DestroyStream(*stream).ok());
}

}  // namespace
}  // namespace tw::gpu
