// The real device: an O_DIRECT file or block device driven through io_uring.
//
// Each Submit() borrows a ring from a small per-device pool (one ring per concurrently
// submitting thread, created on demand and kept), keeps up to queue_depth requests in
// flight, and resubmits the remainder of short transfers. Memory declared with
// RegisterMemory() (the DRAM tier's pinned arena) is registered with every ring as fixed
// buffers of at most 1 GiB each (the kernel's limit per buffer); a request whose buffer lies
// inside one of them is submitted as READ_FIXED/WRITE_FIXED. Where io_uring is refused, the
// factory opens the pread/pwrite device instead (psync_device.cc).
#include <liburing.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>

#include "device_open.h"
#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/store/device.h"

namespace tw::store {
namespace {

class UringDevice : public Device {
 public:
  struct Ring;
  UringDevice(std::string name, OpenedFile file, uint32_t qd, std::unique_ptr<Ring> first)
      : Device(std::move(name), file.size), fd_(file.fd), qd_(qd) {
    rings_.push_back(std::move(first));
  }
  ~UringDevice() override {
    for (auto& r : rings_) io_uring_queue_exit(&r->ring);
    close(fd_);  // also drops the flock
  }

 protected:
  Status SubmitImpl(std::span<const IoRequest> requests) override {
    TW_ASSIGN_OR_RETURN(std::unique_ptr<Ring> ring, Borrow());
    Status s = Run(*ring, requests);
    std::lock_guard<std::mutex> l(mu_);
    rings_.push_back(std::move(ring));
    return s;
  }

  bool RegisterMemoryImpl(void* base, uint64_t length) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (registered_base_ != nullptr || length == 0) return false;
      registered_base_ = static_cast<uint8_t*>(base);
      registered_len_ = length;
      for (uint64_t off = 0; off < length; off += kMaxFixedBuffer) {
        iovecs_.push_back({registered_base_ + off, std::min(kMaxFixedBuffer, length - off)});
      }
    }
    // Register with one ring now, so the caller learns whether it works; other rings
    // register when next borrowed.
    auto ring = Borrow();
    if (!ring.ok()) return false;
    const bool used = (*ring)->fixed;
    std::lock_guard<std::mutex> l(mu_);
    rings_.push_back(std::move(*ring));
    return used;
  }

  Status SyncImpl() override {
    if (fdatasync(fd_) != 0) return ErrnoStatus(errno, StrCat(name(), ": fdatasync"));
    return OkStatus();
  }

 public:
  struct Ring {
    io_uring ring{};
    bool registered = false;  // a registration was attempted
    bool fixed = false;       // iovecs_ are registered with this ring
  };

  std::string_view engine() const override { return "io_uring"; }

 private:
  static constexpr uint64_t kMaxFixedBuffer = uint64_t{1} << 30;

  struct Piece {
    bool write;
    uint64_t offset;
    uint64_t length;
    uint8_t* buf;
  };

  // A ring from the pool, or a new one; registers the declared memory with it if not yet.
  StatusOr<std::unique_ptr<Ring>> Borrow() {
    std::unique_ptr<Ring> ring;
    bool want_fixed = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!rings_.empty()) {
        ring = std::move(rings_.back());
        rings_.pop_back();
      }
      want_fixed = !iovecs_.empty() && !registration_refused_;
    }
    if (!ring) {
      ring = std::make_unique<Ring>();
      int rc = io_uring_queue_init(qd_, &ring->ring, 0);
      if (rc < 0) return ErrnoStatus(-rc, StrCat(name(), ": io_uring_queue_init"));
    }
    if (want_fixed && !ring->registered) {
      ring->registered = true;
      // iovecs_ never changes once set, so reading it unlocked here is safe.
      int rc = io_uring_register_buffers(&ring->ring, iovecs_.data(), unsigned(iovecs_.size()));
      if (rc == 0) {
        ring->fixed = true;
      } else if (!registration_refused_.exchange(true)) {
        TW_LOG(kWarn,
               "io_uring: registering the DRAM arena as fixed buffers failed; I/O pins "
               "pages per request instead (raise RLIMIT_MEMLOCK or grant IPC_LOCK)",
               {{"device", name()}, {"bytes", registered_len_}, {"error", std::strerror(-rc)}});
      }
    }
    return ring;
  }

  // The fixed-buffer index of [buf, buf + len), or -1 when it is not inside one buffer.
  int FixedIndex(const Ring& r, const uint8_t* buf, uint64_t len) const {
    if (!r.fixed || buf < registered_base_ || buf + len > registered_base_ + registered_len_) {
      return -1;
    }
    const uint64_t off = uint64_t(buf - registered_base_);
    const uint64_t idx = off / kMaxFixedBuffer;
    if ((off + len - 1) / kMaxFixedBuffer != idx) return -1;
    return int(idx);
  }

  Status Run(Ring& r, std::span<const IoRequest> requests) {
    io_uring* ring = &r.ring;
    uint64_t fixed_ios = 0;
    std::deque<Piece> todo;
    for (const IoRequest& r : requests) {
      todo.push_back({r.write, r.offset, r.length, static_cast<uint8_t*>(r.buf)});
    }
    std::vector<Piece> slots(qd_);
    std::vector<uint32_t> free_slots;
    for (uint32_t i = 0; i < qd_; ++i) free_slots.push_back(i);
    uint32_t inflight = 0;
    Status first;
    while (!todo.empty() || inflight > 0) {
      bool queued = false;
      while (!todo.empty() && !free_slots.empty() && first.ok()) {
        io_uring_sqe* sqe = io_uring_get_sqe(ring);
        if (!sqe) break;
        uint32_t slot = free_slots.back();
        free_slots.pop_back();
        slots[slot] = todo.front();
        todo.pop_front();
        const Piece& p = slots[slot];
        const int fixed = FixedIndex(r, p.buf, p.length);
        if (fixed >= 0) {
          ++fixed_ios;
          if (p.write) {
            io_uring_prep_write_fixed(sqe, fd_, p.buf, unsigned(p.length), p.offset, fixed);
          } else {
            io_uring_prep_read_fixed(sqe, fd_, p.buf, unsigned(p.length), p.offset, fixed);
          }
        } else if (p.write) {
          io_uring_prep_write(sqe, fd_, p.buf, unsigned(p.length), p.offset);
        } else {
          io_uring_prep_read(sqe, fd_, p.buf, unsigned(p.length), p.offset);
        }
        io_uring_sqe_set_data64(sqe, slot);
        ++inflight;
        queued = true;
      }
      if (!first.ok()) todo.clear();
      if (queued) {
        int rc = io_uring_submit(ring);
        if (rc < 0) return ErrnoStatus(-rc, StrCat(name(), ": io_uring_submit"));
      }
      if (inflight == 0) continue;
      io_uring_cqe* cqe = nullptr;
      int rc = io_uring_wait_cqe(ring, &cqe);
      if (rc == -EINTR) continue;
      if (rc < 0) return ErrnoStatus(-rc, StrCat(name(), ": io_uring_wait_cqe"));
      do {
        uint32_t slot = uint32_t(io_uring_cqe_get_data64(cqe));
        int res = cqe->res;
        io_uring_cqe_seen(ring, cqe);
        --inflight;
        Piece p = slots[slot];
        free_slots.push_back(slot);
        if (res == -EAGAIN || res == -EINTR) {
          todo.push_back(p);
        } else if (res < 0) {
          if (first.ok()) {
            first =
                ErrnoStatus(-res, StrCat(name(), p.write ? ": write at " : ": read at ", p.offset));
          }
        } else if (res == 0) {
          if (first.ok()) {
            first = InternalError(StrCat(name(), ": zero-length transfer at ", p.offset));
          }
        } else if (uint64_t(res) < p.length) {
          todo.push_back(
              {p.write, p.offset + uint64_t(res), p.length - uint64_t(res), p.buf + res});
        }
      } while (io_uring_peek_cqe(ring, &cqe) == 0);
    }
    CountRegisteredIos(fixed_ios);
    return first;
  }

  const int fd_;
  const uint32_t qd_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Ring>> rings_;  // guarded by mu_
  // The registered memory: set once by RegisterMemoryImpl (under mu_), read-only after.
  uint8_t* registered_base_ = nullptr;
  uint64_t registered_len_ = 0;
  std::vector<iovec> iovecs_;
  std::atomic<bool> registration_refused_{false};
};

class UringDeviceFactory : public DeviceFactory {
 public:
  StatusOr<std::unique_ptr<Device>> Open(const DevicePath& path, uint32_t queue_depth) override {
    TW_ASSIGN_OR_RETURN(OpenedFile file, OpenDataFile(path));
    const uint32_t qd = queue_depth ? queue_depth : 32;
    // The first ring, made now: a kernel or a seccomp profile that refuses io_uring is found
    // here, and the path is served with pread/pwrite instead.
    auto ring = std::make_unique<UringDevice::Ring>();
    const int rc = io_uring_queue_init(qd, &ring->ring, 0);
    if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES) {
      TW_LOG(kWarn,
             "io_uring is refused here (an old kernel, kernel.io_uring_disabled, or the "
             "container's seccomp profile); NVMe I/O uses pread/pwrite threads instead",
             {{"device", path.path}, {"error", std::strerror(-rc)}});
      return MakePsyncDevice(path.path, file, PsyncThreads(qd));
    }
    if (rc < 0) {
      close(file.fd);
      return ErrnoStatus(-rc, StrCat(path.path, ": io_uring_queue_init"));
    }
    return std::unique_ptr<Device>(new UringDevice(path.path, file, qd, std::move(ring)));
  }
};

}  // namespace

std::shared_ptr<DeviceFactory> MakeUringDeviceFactory() {
  return std::make_shared<UringDeviceFactory>();
}

}  // namespace tw::store
