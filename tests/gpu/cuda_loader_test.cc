// CudaLibraries::Load: the reason it gives for an off GPU path must be specific and readable,
// and loading must never crash, whatever is (or is not) on the library path.
#include "tw/gpu/cuda_loader.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace tw::gpu {
namespace {

bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tw_gpu_loader_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(CudaLoaderTest, EmptyDirectoryReportsLibraryNotFound) {
  TempDir dir;
  CudaLibraries libs = CudaLibraries::Load({.search_dirs = {dir.path()}});
  const GpuAvailability& a = libs.availability();
  EXPECT_EQ(a.cuda.code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(a.cuda.message(), "libcudart.so.12 not found in " + dir.path()))
      << a.cuda.ToString();
  EXPECT_EQ(a.gds.code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(a.gds.message(), "libcufile.so.0 not found")) << a.gds.ToString();
  EXPECT_EQ(libs.runtime(), nullptr);
  EXPECT_EQ(libs.cufile_handle(), nullptr);
  EXPECT_EQ(a.device_count, 0);
  EXPECT_TRUE(a.Describe().starts_with("gpu off: libcudart.so.12 not found")) << a.Describe();
}

TEST(CudaLoaderTest, FileThatIsNotALibraryReportsWhy) {
  TempDir dir;
  std::ofstream(dir.path() + "/libcudart.so.12") << "not an ELF file";
  CudaLibraries libs = CudaLibraries::Load({.search_dirs = {dir.path()}});
  EXPECT_EQ(libs.availability().cuda.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(libs.availability().cuda.message(), "cannot be loaded"))
      << libs.availability().cuda.ToString();
}

TEST(CudaLoaderTest, LibraryWithoutCudaFunctionsReportsWhatIsMissing) {
  // libm stands in for a library of the right name and the wrong content.
  void* libm = ::dlopen("libm.so.6", RTLD_NOW);
  ASSERT_NE(libm, nullptr);
  Dl_info info{};
  ASSERT_NE(::dladdr(::dlsym(libm, "cos"), &info), 0);
  TempDir dir;
  std::filesystem::create_symlink(info.dli_fname, dir.path() + "/libcudart.so.12");
  CudaLibraries libs = CudaLibraries::Load({.search_dirs = {dir.path()}});
  EXPECT_EQ(libs.availability().cuda.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(libs.availability().cuda.message(), "lacks cudaGetDeviceCount"))
      << libs.availability().cuda.ToString();
  EXPECT_EQ(libs.runtime(), nullptr);
}

class FakeRuntimeTest : public ::testing::Test {
 protected:
  void TearDown() override { ::unsetenv("TW_FAKE_CUDA_ERROR"); }
  CudaLibraries LoadWithError(const char* error) {
    ::setenv("TW_FAKE_CUDA_ERROR", error, 1);
    return CudaLibraries::Load({.search_dirs = {TW_FAKE_CUDART_DIR}});
  }
};

TEST_F(FakeRuntimeTest, Error35MeansNoDriver) {
  CudaLibraries libs = LoadWithError("35");
  const Status& cuda = libs.availability().cuda;
  EXPECT_EQ(cuda.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(cuda.message(), "error 35 (cudaErrorInsufficientDriver)"))
      << cuda.ToString();
  EXPECT_TRUE(Contains(cuda.message(), "no NVIDIA driver")) << cuda.ToString();
  EXPECT_EQ(libs.runtime(), nullptr);
}

TEST_F(FakeRuntimeTest, Error100MeansNoDevice) {
  CudaLibraries libs = LoadWithError("100");
  const Status& cuda = libs.availability().cuda;
  EXPECT_EQ(cuda.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(cuda.message(), "error 100 (cudaErrorNoDevice)")) << cuda.ToString();
  EXPECT_TRUE(libs.availability().Describe().starts_with("gpu off: cudaGetDeviceCount"));
}

TEST_F(FakeRuntimeTest, OtherErrorsAreNamedByNumber) {
  CudaLibraries libs = LoadWithError("3");
  EXPECT_TRUE(Contains(libs.availability().cuda.message(), "error 3"))
      << libs.availability().cuda.ToString();
}

TEST_F(FakeRuntimeTest, DevicesFoundTurnTheGpuPathOn) {
  CudaLibraries libs = LoadWithError("0");
  const GpuAvailability& a = libs.availability();
  ASSERT_TRUE(a.cuda.ok()) << a.cuda.ToString();
  EXPECT_EQ(a.device_count, 2);
  EXPECT_EQ(a.runtime_version, 12040);
  ASSERT_NE(libs.runtime(), nullptr);
  EXPECT_NE(libs.runtime()->MemcpyAsync, nullptr);
  // No libcufile beside the fake runtime: GDS is off, and says so.
  EXPECT_EQ(a.gds.code(), StatusCode::kNotFound);
  EXPECT_TRUE(a.Describe().starts_with("gpu on: 2 device(s), CUDA runtime 12.4")) << a.Describe();
  EXPECT_TRUE(Contains(a.Describe(), "gds off: libcufile.so.0 not found")) << a.Describe();
}

TEST(CudaLoaderTest, WheelRuntimeReportsDriverOrDevice) {
#ifndef TW_CUDA_WHEEL_RUNTIME_DIR
  GTEST_SKIP() << "needs the CUDA runtime wheel in .cache/cuda-venv (scripts/bootstrap.sh)";
#else
  CudaLibraries libs =
      CudaLibraries::Load({.search_dirs = {TW_CUDA_WHEEL_RUNTIME_DIR, TW_CUDA_WHEEL_CUFILE_DIR}});
  const GpuAvailability& a = libs.availability();
  std::printf("with the wheels: %s\n", a.Describe().c_str());
  EXPECT_GE(a.runtime_version, 12000);
  if (a.cuda.ok()) {
    EXPECT_GT(a.device_count, 0);
    return;
  }
  EXPECT_EQ(a.cuda.code(), StatusCode::kUnavailable) << a.cuda.ToString();
  EXPECT_TRUE(Contains(a.cuda.message(), "error 35") || Contains(a.cuda.message(), "error 100"))
      << a.cuda.ToString();
  // libcufile is found and complete, but GDS stays off with the CUDA path.
  EXPECT_EQ(a.gds.code(), StatusCode::kFailedPrecondition) << a.gds.ToString();
  EXPECT_TRUE(Contains(a.gds.message(), "the CUDA path is off")) << a.gds.ToString();
#endif
}

TEST(CudaLoaderTest, DefaultSearchGivesAReadableReasonAndNeverCrashes) {
  CudaLibraries libs = CudaLibraries::Load();
  const GpuAvailability& a = libs.availability();
  std::printf("this machine: %s\n", a.Describe().c_str());
  if (a.cuda.ok()) {
    EXPECT_GT(a.device_count, 0);
    EXPECT_NE(libs.runtime(), nullptr);
    return;
  }
  // No runtime on the library path, or a runtime without a driver (35) or a device (100).
  const bool known =
      a.cuda.code() == StatusCode::kNotFound ||
      (a.cuda.code() == StatusCode::kUnavailable &&
       (Contains(a.cuda.message(), "error 35") || Contains(a.cuda.message(), "error 100")));
  EXPECT_TRUE(known) << a.cuda.ToString();
  EXPECT_FALSE(a.gds.ok());
  EXPECT_FALSE(a.gds.message().empty());
}

}  // namespace
}  // namespace tw::gpu
