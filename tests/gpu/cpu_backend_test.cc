// CpuBackend: CUDA-stream ordering and completion, error propagation, destruction with work
// queued, slice registration, IPC and ReadFile. No test waits on time: a stream is held still by
// a host function blocked on a promise ("gate") that the test opens.
#include "tw/gpu/cpu_backend.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tw::gpu {
namespace {

// Blocks `stream` until Open() is called.
class Gate {
 public:
  Gate(Backend& backend, Stream stream) {
    auto future = opened_.get_future().share();
    EXPECT_TRUE(backend.LaunchHostFunc(stream, [future] { future.wait(); }).ok());
  }
  ~Gate() { Open(); }
  void Open() {
    if (!open_) opened_.set_value();
    open_ = true;
  }

 private:
  std::promise<void> opened_;
  bool open_ = false;
};

std::vector<char> Bytes(std::size_t n, char c) { return std::vector<char>(n, c); }

TEST(CpuBackendTest, CopiesOnOneStreamRunInEnqueueOrder) {
  CpuBackend backend;
  constexpr std::size_t kN = 4096;
  auto dev = backend.AllocateDevice(2 * kN);
  ASSERT_TRUE(dev.ok());
  char* d = static_cast<char*>(*dev);
  auto stream = backend.CreateStream();
  ASSERT_TRUE(stream.ok());
  std::vector<char> a = Bytes(kN, 'a'), b = Bytes(kN, 'b'), out = Bytes(kN, 0);
  Gate gate(backend, *stream);
  // Each copy depends on the one before: only enqueue order gives "b" in `out`.
  ASSERT_TRUE(backend.CopyAsync(d, a.data(), kN, CopyKind::kHostToDevice, *stream).ok());
  ASSERT_TRUE(backend.CopyAsync(d, b.data(), kN, CopyKind::kHostToDevice, *stream).ok());
  ASSERT_TRUE(backend.CopyAsync(d + kN, d, kN, CopyKind::kDeviceToDevice, *stream).ok());
  ASSERT_TRUE(backend.CopyAsync(out.data(), d + kN, kN, CopyKind::kDeviceToHost, *stream).ok());
  EXPECT_EQ(out, Bytes(kN, 0));  // nothing ran while the gate is closed
  gate.Open();
  ASSERT_TRUE(backend.SynchronizeStream(*stream).ok());
  EXPECT_EQ(out, b);
  ASSERT_TRUE(backend.DestroyStream(*stream).ok());
  ASSERT_TRUE(backend.FreeDevice(d).ok());
}

TEST(CpuBackendTest, EventsCompleteInStreamOrder) {
  CpuBackend backend;
  auto stream = backend.CreateStream();
  auto e1 = backend.CreateEvent();
  auto e2 = backend.CreateEvent();
  ASSERT_TRUE(stream.ok() && e1.ok() && e2.ok());
  // An event never recorded is complete.
  EXPECT_EQ(backend.QueryEvent(*e1).value_or(false), true);
  Gate gate(backend, *stream);
  ASSERT_TRUE(backend.RecordEvent(*e1, *stream).ok());
  std::atomic<int> seen_e1{-1}, seen_e2{-1};
  ASSERT_TRUE(backend
                  .LaunchHostFunc(*stream,
                                  [&] {
                                    seen_e1 = backend.QueryEvent(*e1).value_or(false) ? 1 : 0;
                                    seen_e2 = backend.QueryEvent(*e2).value_or(true) ? 1 : 0;
                                  })
                  .ok());
  ASSERT_TRUE(backend.RecordEvent(*e2, *stream).ok());
  EXPECT_EQ(backend.QueryEvent(*e1).value_or(true), false);
  EXPECT_EQ(backend.QueryEvent(*e2).value_or(true), false);
  gate.Open();
  ASSERT_TRUE(backend.SynchronizeEvent(*e2).ok());
  EXPECT_EQ(seen_e1, 1);  // e1 was complete when the work after it ran
  EXPECT_EQ(seen_e2, 0);  // e2 was not, yet
  EXPECT_EQ(backend.QueryEvent(*e1).value_or(false), true);
  EXPECT_EQ(backend.QueryEvent(*e2).value_or(false), true);

  // Re-recording makes the event wait for the newer point.
  Gate gate2(backend, *stream);
  ASSERT_TRUE(backend.RecordEvent(*e1, *stream).ok());
  EXPECT_EQ(backend.QueryEvent(*e1).value_or(true), false);
  gate2.Open();
  ASSERT_TRUE(backend.SynchronizeEvent(*e1).ok());
  EXPECT_EQ(backend.QueryEvent(*e1).value_or(false), true);
  ASSERT_TRUE(backend.DestroyEvent(*e1).ok());
  ASSERT_TRUE(backend.DestroyEvent(*e2).ok());
  EXPECT_FALSE(backend.QueryEvent(*e1).ok());
}

TEST(CpuBackendTest, StreamsAreIndependent) {
  CpuBackend backend;
  auto blocked = backend.CreateStream();
  auto free_stream = backend.CreateStream();
  ASSERT_TRUE(blocked.ok() && free_stream.ok());
  auto dev = backend.AllocateDevice(64);
  ASSERT_TRUE(dev.ok());
  Gate gate(backend, *blocked);
  std::vector<char> src = Bytes(64, 'x'), out = Bytes(64, 0);
  ASSERT_TRUE(backend.CopyAsync(*dev, src.data(), 64, CopyKind::kHostToDevice, *free_stream).ok());
  ASSERT_TRUE(backend.CopyAsync(out.data(), *dev, 64, CopyKind::kDeviceToHost, *free_stream).ok());
  // Completes although the other stream is held.
  ASSERT_TRUE(backend.SynchronizeStream(*free_stream).ok());
  EXPECT_EQ(out, src);
  gate.Open();
  ASSERT_TRUE(backend.SynchronizeStream(*blocked).ok());
}

TEST(CpuBackendTest, SynchronizeWaitsForEveryQueuedCopy) {
  CpuBackend backend;
  auto stream = backend.CreateStream();
  ASSERT_TRUE(stream.ok());
  constexpr std::size_t kChunk = 1 << 20;
  constexpr int kChunks = 16;
  auto dev = backend.AllocateDevice(kChunk * kChunks);
  ASSERT_TRUE(dev.ok());
  std::vector<char> src(kChunk * kChunks), out(kChunk * kChunks, 0);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<char>(i * 131 + 7);
  char* d = static_cast<char*>(*dev);
  for (int i = 0; i < kChunks; ++i) {
    ASSERT_TRUE(backend
                    .CopyAsync(d + i * kChunk, src.data() + i * kChunk, kChunk,
                               CopyKind::kHostToDevice, *stream)
                    .ok());
    ASSERT_TRUE(backend
                    .CopyAsync(out.data() + i * kChunk, d + i * kChunk, kChunk,
                               CopyKind::kDeviceToHost, *stream)
                    .ok());
  }
  ASSERT_TRUE(backend.SynchronizeStream(*stream).ok());
  EXPECT_EQ(out, src);
}

TEST(CpuBackendTest, AnErrorIsStickyForItsStreamOnly) {
  CpuBackend backend;
  auto stream = backend.CreateStream();
  auto other = backend.CreateStream();
  auto event = backend.CreateEvent();
  auto dev = backend.AllocateDevice(64);
  ASSERT_TRUE(stream.ok() && other.ok() && event.ok() && dev.ok());
  std::vector<char> host = Bytes(64, 'h'), not_device = Bytes(64, 0), out = Bytes(64, 0);
  // Enqueue succeeds; the bad device range is found when the copy runs.
  ASSERT_TRUE(
      backend.CopyAsync(not_device.data(), host.data(), 64, CopyKind::kHostToDevice, *stream).ok());
  ASSERT_TRUE(backend.CopyAsync(*dev, host.data(), 64, CopyKind::kHostToDevice, *stream).ok());
  ASSERT_TRUE(backend.CopyAsync(out.data(), *dev, 64, CopyKind::kDeviceToHost, *stream).ok());
  ASSERT_TRUE(backend.RecordEvent(*event, *stream).ok());
  Status status = backend.SynchronizeStream(*stream);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("not inside device memory"), std::string_view::npos)
      << status.ToString();
  EXPECT_EQ(backend.SynchronizeEvent(*event).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(backend.QueryEvent(*event).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(out, Bytes(64, 0));  // the work after the error was skipped
  EXPECT_EQ(not_device, Bytes(64, 0));

  // The other stream still works.
  ASSERT_TRUE(backend.CopyAsync(*dev, host.data(), 64, CopyKind::kHostToDevice, *other).ok());
  ASSERT_TRUE(backend.CopyAsync(out.data(), *dev, 64, CopyKind::kDeviceToHost, *other).ok());
  ASSERT_TRUE(backend.SynchronizeStream(*other).ok());
  EXPECT_EQ(out, host);

  // Errors found at enqueue time come back from the call.
  EXPECT_FALSE(backend.CopyAsync(nullptr, host.data(), 8, CopyKind::kHostToDevice, *other).ok());
  EXPECT_FALSE(backend.CopyAsync(*dev, host.data(), 8, CopyKind::kHostToDevice, Stream{999}).ok());
  EXPECT_FALSE(backend.FreeDevice(host.data()).ok());
}

TEST(CpuBackendTest, DestroyStreamLetsQueuedWorkFinish) {
  CpuBackend backend;
  auto stream = backend.CreateStream();
  auto event = backend.CreateEvent();
  auto dev = backend.AllocateDevice(64);
  ASSERT_TRUE(stream.ok() && event.ok() && dev.ok());
  std::vector<char> src = Bytes(64, 's'), out = Bytes(64, 0);
  Gate gate(backend, *stream);
  ASSERT_TRUE(backend.CopyAsync(*dev, src.data(), 64, CopyKind::kHostToDevice, *stream).ok());
  ASSERT_TRUE(backend.CopyAsync(out.data(), *dev, 64, CopyKind::kDeviceToHost, *stream).ok());
  ASSERT_TRUE(backend.RecordEvent(*event, *stream).ok());
  ASSERT_TRUE(backend.DestroyStream(*stream).ok());  // returns with the work still queued
  EXPECT_EQ(backend.QueryEvent(*event).value_or(true), false);
  EXPECT_FALSE(backend.CopyAsync(*dev, src.data(), 64, CopyKind::kHostToDevice, *stream).ok());
  gate.Open();
  ASSERT_TRUE(backend.SynchronizeEvent(*event).ok());
  EXPECT_EQ(out, src);
}

TEST(CpuBackendTest, DestroyingTheBackendDrainsQueuedWork) {
  std::vector<char> src = Bytes(1 << 16, 'q'), out = Bytes(1 << 16, 0);
  {
    CpuBackend backend;
    auto stream = backend.CreateStream();
    auto dev = backend.AllocateDevice(src.size());
    ASSERT_TRUE(stream.ok() && dev.ok());
    Gate gate(backend, *stream);
    for (int i = 0; i < 8; ++i) {
      ASSERT_TRUE(
          backend.CopyAsync(*dev, src.data(), src.size(), CopyKind::kHostToDevice, *stream).ok());
      ASSERT_TRUE(
          backend.CopyAsync(out.data(), *dev, out.size(), CopyKind::kDeviceToHost, *stream).ok());
    }
    gate.Open();
    // The backend (and its device memory) is destroyed while copies may still be queued.
  }
  EXPECT_EQ(out, src);
}

TEST(CpuBackendTest, RegisterHostInSlicesRegistersAndRollsBack) {
  CpuBackend backend(CpuBackend::Options{.max_register_bytes = 1000});
  std::vector<char> arena(4096);
  // Slices of 1024 exceed the per-call limit: the first fails, nothing stays registered.
  Status status = RegisterHostInSlices(backend, arena.data(), arena.size(), 1024);
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(status.message().find("slice at offset 0"), std::string_view::npos)
      << status.ToString();
  EXPECT_EQ(backend.registered_ranges(), 0u);
  ASSERT_TRUE(RegisterHostInSlices(backend, arena.data(), arena.size(), 1000).ok());
  EXPECT_EQ(backend.registered_ranges(), 5u);  // 4 × 1000 + 96
  // Registering an overlapping range fails, as in CUDA; a failing later slice rolls back.
  EXPECT_EQ(backend.RegisterHost(arena.data() + 10, 10).code(), StatusCode::kAlreadyExists);
  std::vector<char> other(3000);
  ASSERT_TRUE(backend.RegisterHost(other.data() + 2000, 500).ok());
  EXPECT_FALSE(RegisterHostInSlices(backend, other.data(), other.size(), 1000).ok());
  EXPECT_EQ(backend.registered_ranges(), 6u);
  ASSERT_TRUE(backend.UnregisterHost(other.data() + 2000).ok());
  ASSERT_TRUE(UnregisterHostInSlices(backend, arena.data(), arena.size(), 1000).ok());
  EXPECT_EQ(backend.registered_ranges(), 0u);
  EXPECT_FALSE(UnregisterHostInSlices(backend, arena.data(), arena.size(), 1000).ok());
}

TEST(CpuBackendTest, PinnedHostAllocation) {
  CpuBackend backend;
  EXPECT_FALSE(backend.AllocateHost(0).ok());
  auto p = backend.AllocateHost(128);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(backend.FreeHost(*p).ok());
  EXPECT_FALSE(backend.FreeHost(*p).ok());
}

TEST(CpuBackendTest, IpcHandleOpensTheSameAllocation) {
  CpuBackend backend;
  auto dev = backend.AllocateDevice(256);
  ASSERT_TRUE(dev.ok());
  EXPECT_FALSE(backend.GetIpcHandle(static_cast<char*>(*dev) + 8).ok());  // not the base
  auto handle = backend.GetIpcHandle(*dev);
  ASSERT_TRUE(handle.ok());
  auto mapped = backend.OpenIpcHandle(*handle);
  ASSERT_TRUE(mapped.ok());
  EXPECT_EQ(*mapped, *dev);
  EXPECT_EQ(backend.FreeDevice(*dev).code(), StatusCode::kFailedPrecondition);  // still open
  ASSERT_TRUE(backend.CloseIpcHandle(*mapped).ok());
  EXPECT_FALSE(backend.CloseIpcHandle(*mapped).ok());
  ASSERT_TRUE(backend.FreeDevice(*dev).ok());
  EXPECT_EQ(backend.OpenIpcHandle(*handle).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(backend.OpenIpcHandle(IpcMemHandle{}).ok());
}

TEST(CpuBackendTest, ReadFileFillsDeviceMemory) {
  char path[] = "/tmp/tw_gpu_readfile_XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::unlink(path);
  std::string content(10000, '\0');
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i % 251);
  ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  CpuBackend backend;
  auto dev = backend.AllocateDevice(8192);
  ASSERT_TRUE(dev.ok());
  auto got = backend.ReadFile(fd, *dev, 4096, 4096);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, 4096u);
  EXPECT_EQ(std::string(static_cast<char*>(*dev), 4096), content.substr(4096, 4096));
  auto tail = backend.ReadFile(fd, *dev, 8192, 8192);  // short at end of file
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, content.size() - 8192);
  std::vector<char> host(64);
  EXPECT_FALSE(backend.ReadFile(fd, host.data(), 64, 0).ok());  // not device memory
  ::close(fd);
}

}  // namespace
}  // namespace tw::gpu
