// A real crash: a child process writes disk-durability chunks to a real file through io_uring
// and O_DIRECT, reporting each acknowledgement through a pipe; the parent kills it with
// SIGKILL at a random moment, reopens the store and checks that every acknowledged chunk is
// there, byte for byte, and that every chunk whose Delete returned is not.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <set>

#include "store_test_util.h"
#include "tw/store/store.h"

namespace tw::store {
namespace {

using namespace testing;  // store_test_util.h
// Pipe messages besides an acknowledged id: a delete of it begins (its state is unknown from
// then on), a delete of it returned true.
constexpr uint64_t kDeleting = uint64_t{1} << 62;
constexpr uint64_t kDeleted = uint64_t{1} << 63;

std::vector<uint64_t> SizesOf(uint64_t id) {
  return {32 * KiB + (id * 7919) % (160 * KiB), 4096 * (1 + id % 4)};
}

Options FileOptions(const std::string& path) {
  Options o;
  o.dram.capacity = 4 * MiB;
  o.nvme.paths.push_back({path, 256 * MiB});
  o.nvme.region_size = 4 * MiB;
  o.nvme.stripe_unit = 1 * MiB;
  return o;
}

[[noreturn]] void Child(const std::string& path, uint64_t first_id, int fd) {
  auto s = Store::Open(FileOptions(path));
  if (!s.ok()) _exit(3);
  for (uint64_t id = first_id;; ++id) {
    auto c = MakeChunk(id, SizesOf(id));
    Durability d = id % 4 == 3 ? Durability::kMemory : Durability::kDisk;
    if ((*s)->Put(c.Request(d)) == PutResult::kStored && d == Durability::kDisk) {
      if (write(fd, &id, sizeof id) != sizeof id) _exit(4);
      if (id % 5 == 0) {
        uint64_t msg = id | kDeleting;
        if (write(fd, &msg, sizeof msg) != sizeof msg) _exit(4);
        if ((*s)->Delete(c.info.key)) {
          msg = id | kDeleted;
          if (write(fd, &msg, sizeof msg) != sizeof msg) _exit(4);
        }
      }
    }
  }
}

TEST(Kill9Test, AcknowledgedChunksSurviveSigkill) {
  auto dir = std::filesystem::temp_directory_path() / ("tw_kill9_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "data").string();
  std::set<uint64_t> acked, deleted;
  auto note = [&](uint64_t msg) {
    const uint64_t id = msg & ~(kDeleting | kDeleted);
    if (msg & kDeleting) {
      acked.erase(id);
    } else if (msg & kDeleted) {
      deleted.insert(id);
    } else {
      acked.insert(msg);
    }
  };
  std::mt19937_64 rng(99);
  uint64_t next = 1;
  for (int round = 0; round < 4; ++round) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(p[0]);
      Child(path, next, p[1]);
    }
    close(p[1]);
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(150 + rng() % 400);
    uint64_t id;
    while (std::chrono::steady_clock::now() < until) {
      pollfd pf{p[0], POLLIN, 0};
      if (poll(&pf, 1, 10) > 0) {
        if (read(p[0], &id, sizeof id) != sizeof id) break;
        note(id);
      }
    }
    kill(pid, SIGKILL);
    while (read(p[0], &id, sizeof id) == sizeof id) note(id);
    close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);
    auto s = Store::Open(FileOptions(path));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    for (uint64_t a : acked) {
      bool eq;
      GetResult r = ReadAll(**s, MakeChunk(a, SizesOf(a)), &eq);
      ASSERT_TRUE(eq) << "round " << round << ": acknowledged chunk " << a << " "
                      << ToString(r.miss);
      next = std::max(next, a + 1);
    }
    for (uint64_t a : deleted) {
      bool eq;
      GetResult r = ReadAll(**s, MakeChunk(a, SizesOf(a)), &eq);
      ASSERT_NE(r.miss, MissReason::kNone) << "round " << round << ": deleted chunk " << a;
      next = std::max(next, a + 1);
    }
    next += 1000;  // skip ids the child may have put without acknowledging
  }
  EXPECT_GT(acked.size(), 10u);
  EXPECT_GT(deleted.size(), 2u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tw::store
