// The torture harness's device hooks (hook_device.h): a wrapper around the real device.
#include "hook_device.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "tw/common/strings.h"

namespace tw::torture {
namespace {

using store::Device;
using store::DeviceFactory;
using store::DevicePath;
using store::IoRequest;
using store::kSectorSize;

constexpr uint64_t kRecordMagic = 0x31474f4c4f444e55ull;  // "UNDOLOG1"
constexpr uint64_t kRecordEnd = 0x444e45444f444e55ull;    // "UNDODEND"

bool FileExists(const std::string& p) { return !p.empty() && access(p.c_str(), F_OK) == 0; }

Status WriteAll(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoStatus(errno, "undo journal write");
    p += w;
    n -= size_t(w);
  }
  return OkStatus();
}

class HookDevice : public Device {
 public:
  HookDevice(std::unique_ptr<Device> base, HookOptions o, int undo_fd)
      : Device(base->name(), base->size()),
        base_(std::move(base)),
        o_(std::move(o)),
        undo_fd_(undo_fd) {}
  ~HookDevice() override {
    if (undo_fd_ >= 0) close(undo_fd_);
  }
  std::string_view engine() const override { return base_->engine(); }

 protected:
  Status SubmitImpl(std::span<const IoRequest> requests) override {
    Wait();
    bool writes = false;
    for (const IoRequest& r : requests) writes = writes || r.write;
    if (writes && FileExists(o_.enospc_file)) {
      return ErrnoStatus(ENOSPC, StrCat(name(), ": injected out of space"));
    }
    if (!writes || undo_fd_ < 0) return base_->Submit(requests);
    std::shared_lock<std::shared_mutex> l(sync_mu_);
    for (const IoRequest& r : requests) {
      if (r.write) TW_RETURN_IF_ERROR(Journal(r));
    }
    return base_->Submit(requests);
  }
  Status SyncImpl() override {
    Wait();
    if (o_.sync_delay.count() > 0) std::this_thread::sleep_for(o_.sync_delay);
    if (undo_fd_ < 0) return base_->Sync();
    // Writes completed before this point are made durable; none is in progress meanwhile.
    std::unique_lock<std::shared_mutex> l(sync_mu_);
    TW_RETURN_IF_ERROR(base_->Sync());
    std::lock_guard<std::mutex> a(append_mu_);
    if (ftruncate(undo_fd_, 0) != 0) return ErrnoStatus(errno, "undo journal truncate");
    return OkStatus();
  }
  bool RegisterMemoryImpl(void* base, uint64_t length) override {
    return base_->RegisterMemory(base, length);
  }

 private:
  void Wait() {
    while (FileExists(o_.stall_file)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (o_.delay.count() > 0) std::this_thread::sleep_for(o_.delay);
  }
  // Appends the bytes `r` is about to overwrite.
  Status Journal(const IoRequest& r) {
    void* old = std::aligned_alloc(store::kIoAlign, r.length);
    if (old == nullptr) return ErrnoStatus(ENOMEM, "undo journal buffer");
    Status st = base_->Read(r.offset, old, r.length);
    if (st.ok()) {
      std::string rec;
      rec.reserve(r.length + 32);
      const uint64_t head[3] = {kRecordMagic, r.offset, r.length};
      rec.append(reinterpret_cast<const char*>(head), sizeof head);
      rec.append(static_cast<const char*>(old), r.length);
      rec.append(reinterpret_cast<const char*>(&kRecordEnd), sizeof kRecordEnd);
      std::lock_guard<std::mutex> a(append_mu_);
      st = WriteAll(undo_fd_, rec.data(), rec.size());
    }
    std::free(old);
    return st;
  }

  std::unique_ptr<Device> base_;
  HookOptions o_;
  int undo_fd_;
  std::shared_mutex sync_mu_;  // writes shared, sync exclusive
  std::mutex append_mu_;       // one journal append at a time
};

class HookDeviceFactory : public DeviceFactory {
 public:
  HookDeviceFactory(std::shared_ptr<DeviceFactory> real, HookOptions o)
      : real_(std::move(real)), o_(std::move(o)) {}
  StatusOr<std::unique_ptr<Device>> Open(const DevicePath& path, uint32_t queue_depth) override {
    TW_ASSIGN_OR_RETURN(std::unique_ptr<Device> base, real_->Open(path, queue_depth));
    int fd = -1;
    if (o_.undo_journal) {
      const std::string undo = path.path + ".undo";
      fd = open(undo.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd < 0) return ErrnoStatus(errno, StrCat("open ", undo));
    }
    return std::unique_ptr<Device>(new HookDevice(std::move(base), o_, fd));
  }

 private:
  std::shared_ptr<DeviceFactory> real_;
  HookOptions o_;
};

}  // namespace

HookOptions HookOptionsFromEnv() {
  HookOptions o;
  const char* v = std::getenv("TW_TORTURE_UNDO");
  o.undo_journal = v != nullptr && std::string(v) == "1";
  if ((v = std::getenv("TW_TORTURE_STALL_FILE")) != nullptr) o.stall_file = v;
  if ((v = std::getenv("TW_TORTURE_ENOSPC_FILE")) != nullptr) o.enospc_file = v;
  if ((v = std::getenv("TW_TORTURE_SYNC_DELAY_US")) != nullptr) {
    o.sync_delay = std::chrono::microseconds(std::strtoull(v, nullptr, 10));
  }
  if ((v = std::getenv("TW_TORTURE_DELAY_US")) != nullptr) {
    o.delay = std::chrono::microseconds(std::strtoull(v, nullptr, 10));
  }
  return o;
}

std::shared_ptr<DeviceFactory> MakeHookDeviceFactory(std::shared_ptr<DeviceFactory> real,
                                                     HookOptions options) {
  return std::make_shared<HookDeviceFactory>(std::move(real), std::move(options));
}

StatusOr<PowerCutReport> ApplyPowerCut(const std::string& data_path, bool drop_all, uint64_t seed) {
  const std::string undo = data_path + ".undo";
  PowerCutReport rep;
  int ufd = open(undo.c_str(), O_RDWR | O_CLOEXEC);
  if (ufd < 0) {
    if (errno == ENOENT) return rep;
    return ErrnoStatus(errno, StrCat("open ", undo));
  }
  struct stat st {};
  fstat(ufd, &st);
  std::vector<uint8_t> buf(size_t(st.st_size));
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t r = pread(ufd, buf.data() + got, buf.size() - got, off_t(got));
    if (r <= 0) break;
    got += size_t(r);
  }
  buf.resize(got);
  struct Rec {
    uint64_t offset, length;
    const uint8_t* old;
  };
  std::vector<Rec> recs;
  for (size_t p = 0; p + 24 <= buf.size();) {
    uint64_t head[3];
    std::memcpy(head, buf.data() + p, sizeof head);
    if (head[0] != kRecordMagic || p + 24 + head[2] + 8 > buf.size()) break;
    uint64_t end;
    std::memcpy(&end, buf.data() + p + 24 + head[2], 8);
    if (end != kRecordEnd) break;
    recs.push_back({head[1], head[2], buf.data() + p + 24});
    p += 24 + head[2] + 8;
  }
  int dfd = open(data_path.c_str(), O_RDWR | O_CLOEXEC);
  if (dfd < 0) {
    close(ufd);
    return ErrnoStatus(errno, StrCat("open ", data_path));
  }
  std::mt19937_64 rng(seed);
  Status result = OkStatus();
  for (auto it = recs.rbegin(); it != recs.rend() && result.ok(); ++it) {
    ++rep.writes;
    const int choice = drop_all ? 0 : int(rng() % 3);
    if (choice == 1) {
      ++rep.kept;
      continue;
    }
    for (uint64_t s = 0; s < it->length; s += kSectorSize) {
      if (choice == 2 && (rng() & 1)) continue;  // torn: this sector made it
      if (pwrite(dfd, it->old + s, kSectorSize, off_t(it->offset + s)) != ssize_t(kSectorSize)) {
        result = ErrnoStatus(errno, StrCat("pwrite ", data_path));
        break;
      }
    }
    ++(choice == 0 ? rep.lost : rep.torn);
  }
  if (result.ok() && fdatasync(dfd) != 0) result = ErrnoStatus(errno, "fdatasync data");
  if (result.ok() && ftruncate(ufd, 0) != 0) result = ErrnoStatus(errno, "truncate undo");
  close(dfd);
  close(ufd);
  if (!result.ok()) return result;
  return rep;
}

}  // namespace tw::torture
