// TransferQueue on the CPU backend: the scheduler's decisions, loads issued before saves with a
// save piece after every loads_per_save load pieces (saves never starve), bytes moved exactly,
// deadlines, an owner's cancellation (client death), a failing piece, and shutdown.
#include "tw/gpu/transfer_queue.h"

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tw/gpu/cpu_backend.h"

namespace tw::gpu {
namespace {

using Clock = std::chrono::steady_clock;

TEST(TransferSchedulerTest, LoadsFirstSavesAfterEnoughLoads) {
  TransferScheduler s{.loads_per_save = 3};
  EXPECT_EQ(s.Next(true, false, 100), TransferClass::kLoad);
  EXPECT_EQ(s.Next(false, true, 0), TransferClass::kSave);
  EXPECT_EQ(s.Next(true, true, 0), TransferClass::kLoad);
  EXPECT_EQ(s.Next(true, true, 2), TransferClass::kLoad);
  EXPECT_EQ(s.Next(true, true, 3), TransferClass::kSave);
}

// Collects job completions; Wait blocks until `n` jobs completed.
struct Done {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<std::string, Status>> order;
  std::function<void(Status)> Callback(std::string name) {
    return [this, name](Status s) {
      std::lock_guard lock(mu);
      order.emplace_back(name, s);
      cv.notify_all();
    };
  }
  void Wait(std::size_t n) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return order.size() >= n; });
  }
};

class TransferQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    device_ = static_cast<char*>(*backend_.AllocateDevice(kBytes));
    host_.assign(kBytes, 0);
    for (std::size_t i = 0; i < kBytes; ++i) host_[i] = static_cast<char>(i * 7 + 3);
  }
  void TearDown() override { ASSERT_TRUE(backend_.FreeDevice(device_).ok()); }

  static constexpr std::size_t kBytes = 1 << 16;
  CpuBackend backend_;
  char* device_ = nullptr;
  std::vector<char> host_;
};

TEST_F(TransferQueueTest, LoadsGoFirstAndSavesNeverStarve) {
  std::vector<std::pair<std::uint64_t, TransferClass>> issued;
  auto q = TransferQueue::Create(backend_, {.piece_bytes = 1024,
                                            .max_in_flight = 2,
                                            .scheduler = {.loads_per_save = 4},
                                            .on_issue =
                                                [&](std::uint64_t id, TransferClass c) {
                                                  issued.push_back({id, c});
                                                },
                                            .start_paused = true});
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  Done done;
  std::vector<char> saved(kBytes / 2);
  // One save of 3 pieces, queued first, then 10 one-piece loads.
  auto save = (*q)->Submit({.kind = TransferClass::kSave,
                            .copies = {{saved.data(), device_ + kBytes / 2, 3072}},
                            .done = done.Callback("save")});
  ASSERT_TRUE(save.ok());
  for (int i = 0; i < 10; ++i) {
    auto id = (*q)->Submit({.kind = TransferClass::kLoad,
                            .copies = {{device_ + i * 1024, host_.data() + i * 1024, 1024}},
                            .done = done.Callback("load" + std::to_string(i))});
    ASSERT_TRUE(id.ok());
  }
  (*q)->Start();
  done.Wait(11);
  // Issue order: 4 loads, a save piece, 4 loads, a save piece, the last 2 loads, the last save
  // piece.
  std::string order;
  for (auto [id, c] : issued) order += c == TransferClass::kLoad ? 'L' : 'S';
  EXPECT_EQ(order, "LLLLSLLLLSLLS");
  EXPECT_EQ(done.order.back().first, "save");
  for (auto& [name, s] : done.order) EXPECT_TRUE(s.ok()) << name << s.ToString();
  EXPECT_EQ(std::memcmp(device_, host_.data(), 10 * 1024), 0);
  EXPECT_EQ(std::memcmp(saved.data(), device_ + kBytes / 2, 3072), 0);
  const TransferQueueStats st = (*q)->Stats();
  EXPECT_EQ(st.loads_done, 10u);
  EXPECT_EQ(st.saves_done, 1u);
  EXPECT_EQ(st.pieces, 13u);
  EXPECT_EQ(st.bytes, 10u * 1024 + 3072);
}

TEST_F(TransferQueueTest, ExpiredJobsAreNotCopiedAndStartedJobsFinish) {
  Clock::time_point now = Clock::now();
  auto q = TransferQueue::Create(backend_, {.now = [&] { return now; }, .start_paused = true});
  ASSERT_TRUE(q.ok());
  Done done;
  std::vector<char> untouched(1024, 'x');
  ASSERT_TRUE((*q)->Submit({.kind = TransferClass::kSave,
                            .copies = {{untouched.data(), device_, 1024}},
                            .deadline = now - std::chrono::milliseconds(1),
                            .done = done.Callback("late")})
                  .ok());
  ASSERT_TRUE((*q)->Submit({.kind = TransferClass::kLoad,
                            .copies = {{device_, host_.data(), 4096}},
                            .deadline = now + std::chrono::seconds(1),
                            .done = done.Callback("in time")})
                  .ok());
  (*q)->Start();
  done.Wait(2);
  for (auto& [name, s] : done.order) {
    if (name == "late") {
      EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
    } else {
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
  }
  EXPECT_EQ(untouched, std::vector<char>(1024, 'x'));
  EXPECT_EQ((*q)->Stats().expired, 1u);
}

TEST_F(TransferQueueTest, CancelOwnerFailsItsJobsAndLeavesNothingInFlight) {
  auto q = TransferQueue::Create(backend_, {.piece_bytes = 512, .start_paused = true});
  ASSERT_TRUE(q.ok());
  Done done;
  std::vector<char> dead_client(kBytes / 2, 'd');
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE((*q)->Submit({.kind = TransferClass::kSave,
                              .owner = 7,
                              .copies = {{dead_client.data(), device_, 8192}},
                              .done = done.Callback("dead" + std::to_string(i))})
                    .ok());
  }
  ASSERT_TRUE((*q)->Submit({.kind = TransferClass::kLoad,
                            .owner = 8,
                            .copies = {{device_ + 8192, host_.data(), 2048}},
                            .done = done.Callback("alive")})
                  .ok());
  EXPECT_EQ((*q)->CancelOwner(7), 3u);
  (*q)->Start();
  done.Wait(4);
  int cancelled = 0;
  for (auto& [name, s] : done.order) {
    if (name.starts_with("dead")) {
      EXPECT_EQ(s.code(), StatusCode::kCancelled);
      ++cancelled;
    } else {
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
  }
  EXPECT_EQ(cancelled, 3);
  EXPECT_EQ(dead_client, std::vector<char>(kBytes / 2, 'd'));
  EXPECT_EQ(std::memcmp(device_ + 8192, host_.data(), 2048), 0);
  EXPECT_EQ((*q)->Stats().cancelled, 3u);
  EXPECT_EQ((*q)->CancelOwner(7), 0u);
}

TEST_F(TransferQueueTest, AFailingPieceFailsItsJobAndTheQueueGoesOn) {
  auto q = TransferQueue::Create(backend_, {.max_in_flight = 1, .start_paused = true});
  ASSERT_TRUE(q.ok());
  Done done;
  std::vector<char> host(1024);
  // The device side is host memory the backend never allocated: the copy fails when it runs.
  ASSERT_TRUE((*q)->Submit({.kind = TransferClass::kLoad,
                            .copies = {{host.data(), host_.data(), 1024}},
                            .done = done.Callback("bad")})
                  .ok());
  ASSERT_TRUE((*q)->Submit({.kind = TransferClass::kLoad,
                            .copies = {{device_, host_.data(), 1024}},
                            .done = done.Callback("good")})
                  .ok());
  (*q)->Start();
  done.Wait(2);
  EXPECT_EQ(done.order[0].first, "bad");
  EXPECT_EQ(done.order[0].second.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(done.order[0].second.message().find("not inside device memory"), std::string::npos);
  EXPECT_EQ(done.order[1].first, "good");
  EXPECT_TRUE(done.order[1].second.ok()) << done.order[1].second.ToString();
  EXPECT_EQ((*q)->Stats().failed, 1u);
}

TEST_F(TransferQueueTest, BadJobsAndOptionsAreRefusedAndShutdownCancelsWaitingJobs) {
  EXPECT_EQ(TransferQueue::Create(backend_, {.piece_bytes = 0}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(TransferQueue::Create(backend_, {.scheduler = {.loads_per_save = 0}}).status().code(),
            StatusCode::kInvalidArgument);
  Done done;
  {
    auto q = TransferQueue::Create(backend_, {.start_paused = true});
    ASSERT_TRUE(q.ok());
    EXPECT_EQ((*q)->Submit({.done = done.Callback("empty")}).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ((*q)->Submit({.copies = {{device_, nullptr, 10}}, .done = done.Callback("null")})
                  .status()
                  .code(),
              StatusCode::kInvalidArgument);
    ASSERT_TRUE(
        (*q)->Submit({.copies = {{device_, host_.data(), 10}}, .done = done.Callback("waiting")})
            .ok());
  }  // destroyed before it ever started
  ASSERT_EQ(done.order.size(), 1u);
  EXPECT_EQ(done.order[0].first, "waiting");
  EXPECT_EQ(done.order[0].second.code(), StatusCode::kCancelled);
}

}  // namespace
}  // namespace tw::gpu
