#include "tw/store/device.h"

#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <filesystem>

#include "aligned_buffer.h"
#include "tw/store/testing/fault_device.h"
#include "tw/store/testing/mem_device.h"

namespace tw::store {
namespace {

constexpr uint64_t MiB = 1 << 20;

void Fill(AlignedBuffer& b, uint8_t v) { std::memset(b.data(), v, b.size()); }

TEST(DeviceTest, MemDeviceKeepsBytesAcrossReopenAndLocks) {
  MemDeviceFactory f;
  auto d = f.Open({"/dev/m", 4 * MiB}, 8);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(f.Open({"/dev/m", 4 * MiB}, 8).ok());  // locked
  AlignedBuffer w(8192), r(8192);
  Fill(w, 0xAB);
  ASSERT_TRUE((*d)->Write(4096, w.data(), 8192).ok());
  EXPECT_EQ((*d)->bytes_written(), 8192u);
  // Unaligned and out-of-range requests are refused.
  EXPECT_FALSE((*d)->Write(100, w.data(), 4096).ok());
  EXPECT_FALSE((*d)->Read(4 * MiB, r.data(), 4096).ok());
  d->reset();
  auto again = f.Open({"/dev/m", 4 * MiB}, 8);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->Read(4096, r.data(), 8192).ok());
  EXPECT_EQ(0, memcmp(w.data(), r.data(), 8192));
  EXPECT_EQ((*again)->bytes_read(), 8192u);
}

TEST(DeviceTest, FaultDeviceFailsTheNthRequest) {
  FaultDeviceFactory f;
  auto d = f.Open({"/dev/f", 1 * MiB}, 8);
  ASSERT_TRUE(d.ok());
  auto st = f.state("/dev/f");
  AlignedBuffer b(4096);
  st->FailNthWrite(2);
  EXPECT_TRUE((*d)->Write(0, b.data(), 4096).ok());
  EXPECT_FALSE((*d)->Write(0, b.data(), 4096).ok());
  EXPECT_TRUE((*d)->Write(0, b.data(), 4096).ok());
  st->FailNthRead(1);
  EXPECT_FALSE((*d)->Read(0, b.data(), 4096).ok());
  EXPECT_TRUE((*d)->Read(0, b.data(), 4096).ok());
  st->SetFailAll(true);
  EXPECT_FALSE((*d)->Sync().ok());
  st->SetFailAll(false);
  EXPECT_TRUE((*d)->Sync().ok());
}

TEST(DeviceTest, PowerCutDropsUnsyncedWritesOnly) {
  FaultDeviceFactory f;
  auto d = f.Open({"/dev/p", 1 * MiB}, 8);
  ASSERT_TRUE(d.ok());
  auto st = f.state("/dev/p");
  AlignedBuffer a(4096), b(4096), r(4096);
  Fill(a, 1);
  Fill(b, 2);
  ASSERT_TRUE((*d)->Write(0, a.data(), 4096).ok());
  ASSERT_TRUE((*d)->Sync().ok());
  ASSERT_TRUE((*d)->Write(0, b.data(), 4096).ok());
  ASSERT_TRUE((*d)->Write(8192, b.data(), 4096).ok());
  EXPECT_EQ(st->unsynced_writes(), 2u);
  st->PowerCut(FaultState::CutMode::kDropAll, 1);
  EXPECT_FALSE((*d)->Read(0, r.data(), 4096).ok());  // dead until revived
  d->reset();
  st->Revive();
  auto again = f.Open({"/dev/p", 1 * MiB}, 8);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->Read(0, r.data(), 4096).ok());
  EXPECT_EQ(0, memcmp(r.data(), a.data(), 4096));
  ASSERT_TRUE((*again)->Read(8192, r.data(), 4096).ok());
  EXPECT_EQ(r.data()[0], 0);
}

TEST(DeviceTest, RandomPowerCutTearsAt512Bytes) {
  FaultDeviceFactory f;
  auto d = f.Open({"/dev/t", 1 * MiB}, 8);
  ASSERT_TRUE(d.ok());
  auto st = f.state("/dev/t");
  AlignedBuffer b(64 * 1024);
  Fill(b, 7);
  for (int i = 0; i < 15; ++i) ASSERT_TRUE((*d)->Write(uint64_t(i) * 65536, b.data(), 65536).ok());
  st->PowerCut(FaultState::CutMode::kRandom, 42);
  d->reset();
  st->Revive();
  auto again = f.Open({"/dev/t", 1 * MiB}, 8);
  AlignedBuffer r(15 * 65536);
  ASSERT_TRUE((*again)->Read(0, r.data(), r.size()).ok());
  int old_sectors = 0, new_sectors = 0;
  for (uint64_t s = 0; s < r.size(); s += 512) {
    // Every 512-byte sector is wholly old or wholly new.
    bool all_new = true, all_old = true;
    for (uint64_t i = 0; i < 512; ++i) {
      all_new &= r.data()[s + i] == 7;
      all_old &= r.data()[s + i] == 0;
    }
    ASSERT_TRUE(all_new || all_old);
    (all_new ? new_sectors : old_sectors)++;
  }
  EXPECT_GT(old_sectors, 0);
  EXPECT_GT(new_sectors, 0);
}

// Opens, locks and round-trips more requests than the queue depth, of several sizes.
void ExerciseFileDevice(DeviceFactory& f, std::string_view engine) {
  auto dir = std::filesystem::temp_directory_path() /
             ("tw_dev_" + std::string(engine) + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "f").string();
  auto d = f.Open({path, 8 * MiB}, 4);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ((*d)->engine(), engine);
  EXPECT_EQ((*d)->size(), 8 * MiB);
  EXPECT_FALSE(f.Open({path, 8 * MiB}, 4).ok());
  std::vector<AlignedBuffer> bufs;
  std::vector<IoRequest> reqs;
  for (int i = 0; i < 20; ++i) {
    bufs.emplace_back(uint64_t(4096) * (1 + i % 5));
    Fill(bufs.back(), uint8_t(i + 1));
    reqs.push_back({true, uint64_t(i) * 32768, bufs.back().size(), bufs.back().data()});
  }
  ASSERT_TRUE((*d)->Submit(reqs).ok());
  ASSERT_TRUE((*d)->Sync().ok());
  for (int i = 0; i < 20; ++i) {
    AlignedBuffer r(bufs[i].size());
    ASSERT_TRUE((*d)->Read(uint64_t(i) * 32768, r.data(), r.size()).ok());
    EXPECT_EQ(0, memcmp(r.data(), bufs[i].data(), r.size()));
  }
  // A request past the end fails with the device's name and the offset; the batch's other
  // requests still complete.
  AlignedBuffer tail(4096);
  const IoRequest past[] = {{false, 0, 4096, tail.data()}, {false, 9 * MiB, 4096, tail.data()}};
  Status s = (*d)->Submit(past);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path), std::string::npos) << s.ToString();
  d->reset();
  // The lock went with the device: the path opens again, with the bytes written before.
  auto again = f.Open({path, 8 * MiB}, 4);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  AlignedBuffer r(bufs[3].size());
  ASSERT_TRUE((*again)->Read(3 * 32768, r.data(), r.size()).ok());
  EXPECT_EQ(0, memcmp(r.data(), bufs[3].data(), r.size()));
  again->reset();
  std::filesystem::remove_all(dir);
}

TEST(DeviceTest, UringDeviceOnAFile) { ExerciseFileDevice(*MakeUringDeviceFactory(), "io_uring"); }

TEST(DeviceTest, PsyncDeviceOnAFile) { ExerciseFileDevice(*MakePsyncDeviceFactory(), "psync"); }

// A process whose seccomp filter refuses io_uring_setup (as the default profiles of Docker,
// podman and containerd do) gets the pread/pwrite device from the io_uring factory, and its
// I/O works. Run in a child: a seccomp filter cannot be removed.
TEST(DeviceTest, UringFactoryFallsBackWhenSeccompRefusesIoUring) {
  auto dir = std::filesystem::temp_directory_path() / ("tw_devsec_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "f").string();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(std::size(filter)), filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(10);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) _exit(11);
    auto d = MakeUringDeviceFactory()->Open({path, 4 * MiB}, 8);
    if (!d.ok()) _exit(12);
    if ((*d)->engine() != "psync") _exit(13);
    AlignedBuffer w(64 * 1024), r(64 * 1024);
    Fill(w, 0x3c);
    if (!(*d)->Write(MiB, w.data(), w.size()).ok() || !(*d)->Sync().ok()) _exit(14);
    if (!(*d)->Read(MiB, r.data(), r.size()).ok()) _exit(15);
    _exit(memcmp(w.data(), r.data(), w.size()) == 0 ? 0 : 16);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(WIFEXITED(status)) << "child died with signal " << WTERMSIG(status);
  // 10/11: no seccomp here; 12: open failed; 13: not the pread/pwrite device; 14-16: its I/O.
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(DeviceTest, UringDeviceUsesRegisteredMemory) {
  auto dir = std::filesystem::temp_directory_path() / ("tw_devreg_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto f = MakeUringDeviceFactory();
  auto d = f->Open({(dir / "f").string(), 8 * MiB}, 4);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  Device& dev = **d;
  AlignedBuffer arena(2 * MiB);
  AlignedBuffer outside(64 * 1024);
  if (!dev.RegisterMemory(arena.data(), arena.size())) {
    d->reset();
    std::filesystem::remove_all(dir);
    GTEST_SKIP() << "io_uring refused to register 2 MiB of fixed buffers (needs RLIMIT_MEMLOCK "
                    "of at least that much, or CAP_IPC_LOCK)";
  }
  EXPECT_FALSE(dev.RegisterMemory(outside.data(), outside.size())) << "only one range";
  // Writes from inside the registered range and from outside it, read back both ways.
  for (uint64_t i = 0; i < arena.size(); ++i) arena.data()[i] = uint8_t(i * 7 + 1);
  Fill(outside, 0x5c);
  const IoRequest writes[] = {{true, 0, MiB, arena.data()},
                              {true, MiB, MiB, arena.data() + MiB},
                              {true, 4 * MiB, outside.size(), outside.data()}};
  ASSERT_TRUE(dev.Submit(writes).ok());
  EXPECT_EQ(dev.registered_ios(), 2u);
  ASSERT_TRUE(dev.Sync().ok());
  AlignedBuffer check(2 * MiB);
  ASSERT_TRUE(dev.Read(0, check.data(), check.size()).ok());
  EXPECT_EQ(0, memcmp(check.data(), arena.data(), check.size()));
  EXPECT_EQ(dev.registered_ios(), 2u) << "a read into unregistered memory is a plain read";
  // A read into the registered range, landing at an offset inside it.
  std::memset(arena.data(), 0, arena.size());
  ASSERT_TRUE(dev.Read(4 * MiB, arena.data() + 8192, outside.size()).ok());
  EXPECT_EQ(0, memcmp(arena.data() + 8192, outside.data(), outside.size()));
  EXPECT_EQ(dev.registered_ios(), 3u);
  d->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tw::store
