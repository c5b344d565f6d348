// The pread/pwrite device: what the io_uring factory falls back to when io_uring is refused,
// and what MakePsyncDeviceFactory() opens. O_DIRECT like the io_uring device; a batch's
// requests run in parallel on a small pool of worker threads (the caller runs the first one
// itself, so a one-request batch never changes thread).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "device_open.h"
#include "tw/common/strings.h"

namespace tw::store {
namespace {

class PsyncDevice : public Device {
 public:
  PsyncDevice(std::string name, OpenedFile file, uint32_t threads)
      : Device(std::move(name), file.size), fd_(file.fd) {
    for (uint32_t i = 0; i < threads; ++i) workers_.emplace_back([this] { Work(); });
  }

  std::string_view engine() const override { return "psync"; }

  ~PsyncDevice() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    close(fd_);  // also drops the flock
  }

 protected:
  Status SubmitImpl(std::span<const IoRequest> requests) override {
    if (requests.empty()) return OkStatus();
    Batch batch;
    batch.remaining = requests.size() - 1;
    if (batch.remaining > 0) {
      {
        std::lock_guard<std::mutex> l(mu_);
        for (size_t i = 1; i < requests.size(); ++i) queue_.push_back({&requests[i], &batch});
      }
      if (batch.remaining == 1) {
        cv_.notify_one();
      } else {
        cv_.notify_all();
      }
    }
    Status first = Run(requests[0]);
    std::unique_lock<std::mutex> l(batch.mu);
    batch.done.wait(l, [&] { return batch.remaining == 0; });
    return first.ok() ? batch.first : first;
  }

  Status SyncImpl() override {
    if (fdatasync(fd_) != 0) return ErrnoStatus(errno, StrCat(name(), ": fdatasync"));
    return OkStatus();
  }

 private:
  struct Batch {
    std::mutex mu;
    std::condition_variable done;
    size_t remaining = 0;  // guarded by mu
    Status first;          // guarded by mu
  };
  struct Item {
    const IoRequest* request;
    Batch* batch;
  };

  // One request, resuming short transfers; EINTR is retried.
  Status Run(const IoRequest& r) const {
    auto* buf = static_cast<uint8_t*>(r.buf);
    uint64_t done = 0;
    while (done < r.length) {
      const ssize_t n = r.write ? pwrite(fd_, buf + done, r.length - done, off_t(r.offset + done))
                                : pread(fd_, buf + done, r.length - done, off_t(r.offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        return ErrnoStatus(errno,
                           StrCat(name(), r.write ? ": write at " : ": read at ", r.offset + done));
      if (n == 0)
        return InternalError(StrCat(name(), ": zero-length transfer at ", r.offset + done));
      done += uint64_t(n);
    }
    return OkStatus();
  }

  void Work() {
    for (;;) {
      Item item{};
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, nothing left
        item = queue_.front();
        queue_.pop_front();
      }
      Status s = Run(*item.request);
      std::lock_guard<std::mutex> l(item.batch->mu);
      if (!s.ok() && item.batch->first.ok()) item.batch->first = std::move(s);
      if (--item.batch->remaining == 0) item.batch->done.notify_one();
    }
  }

  const int fd_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;  // guarded by mu_
  bool stop_ = false;       // guarded by mu_
  std::vector<std::thread> workers_;
};

class PsyncDeviceFactory : public DeviceFactory {
 public:
  StatusOr<std::unique_ptr<Device>> Open(const DevicePath& path, uint32_t queue_depth) override {
    TW_ASSIGN_OR_RETURN(OpenedFile file, OpenDataFile(path));
    return MakePsyncDevice(path.path, file, PsyncThreads(queue_depth));
  }
};

}  // namespace

uint32_t PsyncThreads(uint32_t queue_depth) {
  return std::clamp<uint32_t>(queue_depth ? queue_depth / 4 : 8, 2, 16);
}

std::unique_ptr<Device> MakePsyncDevice(std::string name, OpenedFile file, uint32_t threads) {
  return std::make_unique<PsyncDevice>(std::move(name), file, threads);
}

std::shared_ptr<DeviceFactory> MakePsyncDeviceFactory() {
  return std::make_shared<PsyncDeviceFactory>();
}

}  // namespace tw::store
