// Device base class, in-memory devices and the fault-injecting wrapper. The io_uring device
// lives in uring_device.cc.
#include "tw/store/device.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <thread>

#include "tw/common/strings.h"

namespace tw::store {

namespace {

bool Aligned(uint64_t v) { return v % kIoAlign == 0; }

Status CheckRequest(const Device& d, const IoRequest& r) {
  if (!Aligned(r.offset) || !Aligned(r.length) ||
      reinterpret_cast<uintptr_t>(r.buf) % kIoAlign != 0) {
    return InvalidArgumentError(
        StrCat(d.name(), ": unaligned I/O at ", r.offset, " len ", r.length));
  }
  if (r.offset + r.length > d.size() || r.offset + r.length < r.offset) {
    return InvalidArgumentError(
        StrCat(d.name(), ": I/O past the end: ", r.offset, "+", r.length, " > ", d.size()));
  }
  return OkStatus();
}

}  // namespace

Status Device::Submit(std::span<const IoRequest> requests) {
  uint64_t rd = 0, wr = 0;
  for (const IoRequest& r : requests) {
    TW_RETURN_IF_ERROR(CheckRequest(*this, r));
    (r.write ? wr : rd) += r.length;
  }
  bytes_read_.fetch_add(rd, std::memory_order_relaxed);
  bytes_written_.fetch_add(wr, std::memory_order_relaxed);
  if (requests.empty()) return OkStatus();
  return SubmitImpl(requests);
}

Status Device::Read(uint64_t offset, void* buf, uint64_t length) {
  IoRequest r{false, offset, length, buf};
  return Submit({&r, 1});
}

Status Device::Write(uint64_t offset, const void* buf, uint64_t length) {
  IoRequest r{true, offset, length, const_cast<void*>(buf)};
  return Submit({&r, 1});
}

Status Device::Sync() {
  syncs_.fetch_add(1, std::memory_order_relaxed);
  return SyncImpl();
}

// ---------------------------------------------------------------------------------------------
// In-memory devices.

struct MemDeviceFactory::Backing {
  explicit Backing(uint64_t n) : size(n) {
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    data = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
  }
  ~Backing() {
    if (data) munmap(data, size);
  }
  uint64_t size;
  uint8_t* data;
  std::atomic<bool> open{false};
};

namespace {

class MemDevice : public Device {
 public:
  MemDevice(std::string name, std::shared_ptr<MemDeviceFactory::Backing> b)
      : Device(std::move(name), b->size), b_(std::move(b)) {}
  ~MemDevice() override { b_->open = false; }

 protected:
  Status SubmitImpl(std::span<const IoRequest> requests) override {
    for (const IoRequest& r : requests) {
      if (r.write) {
        std::memcpy(b_->data + r.offset, r.buf, r.length);
      } else {
        std::memcpy(r.buf, b_->data + r.offset, r.length);
      }
    }
    return OkStatus();
  }
  Status SyncImpl() override { return OkStatus(); }

 private:
  std::shared_ptr<MemDeviceFactory::Backing> b_;
};

}  // namespace

StatusOr<std::unique_ptr<Device>> MemDeviceFactory::Open(const config::NvmePathConfig& path,
                                                         uint32_t /*queue_depth*/) {
  std::lock_guard<std::mutex> l(mu_);
  auto& b = backings_[path.path];
  if (!b) {
    if (path.capacity == 0 || path.capacity % kIoAlign != 0) {
      return InvalidArgumentError(StrCat(path.path,
                                         ": in-memory device needs a capacity that "
                                         "is a multiple of 4 KiB"));
    }
    b = std::make_shared<Backing>(path.capacity);
    if (!b->data) {
      b.reset();
      return ResourceExhaustedError(StrCat(path.path, ": cannot map ", path.capacity, " bytes"));
    }
  }
  bool expected = false;
  if (!b->open.compare_exchange_strong(expected, true)) {
    return FailedPreconditionError(StrCat(path.path, ": locked by another store"));
  }
  return std::unique_ptr<Device>(new MemDevice(path.path, b));
}

std::shared_ptr<MemDeviceFactory::Backing> MemDeviceFactory::backing(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = backings_.find(path);
  return it == backings_.end() ? nullptr : it->second;
}

// ---------------------------------------------------------------------------------------------
// Fault injection.

class FaultDevice : public Device {
 public:
  FaultDevice(std::unique_ptr<Device> base, std::shared_ptr<FaultState> st)
      : Device(base->name(), base->size()), base_(std::move(base)), st_(std::move(st)) {
    std::lock_guard<std::mutex> l(st_->mu_);
    st_->base_ = base_.get();
  }
  ~FaultDevice() override {
    std::lock_guard<std::mutex> l(st_->mu_);
    st_->base_ = nullptr;
    st_->undo_.clear();  // destroying the device is not a power cut: its writes stay
  }

 protected:
  Status SubmitImpl(std::span<const IoRequest> requests) override {
    std::lock_guard<std::mutex> l(st_->mu_);
    for (const IoRequest& r : requests) {
      if (st_->dead_ || st_->fail_all_) return ErrnoStatus(EIO, StrCat(name(), ": injected"));
      uint64_t& countdown = r.write ? st_->fail_write_in_ : st_->fail_read_in_;
      if (countdown > 0 && --countdown == 0) {
        return ErrnoStatus(EIO,
                           StrCat(name(), ": injected ", r.write ? "write" : "read", " failure"));
      }
      if (r.write) {
        FaultState::Undo u{r.offset, std::vector<uint8_t>(r.length)};
        ReadRaw(r.offset, u.old_bytes.data(), r.length);
        st_->undo_.push_back(std::move(u));
      }
      TW_RETURN_IF_ERROR(base_->Submit({&r, 1}));
    }
    return OkStatus();
  }
  Status SyncImpl() override {
    std::chrono::microseconds delay;
    {
      std::lock_guard<std::mutex> l(st_->mu_);
      delay = st_->sync_delay_;
    }
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    std::lock_guard<std::mutex> l(st_->mu_);
    if (st_->dead_ || st_->fail_all_) return ErrnoStatus(EIO, StrCat(name(), ": injected"));
    st_->undo_.clear();
    return base_->Sync();
  }
  bool RegisterMemoryImpl(void* base, uint64_t length) override {
    return base_->RegisterMemory(base, length);
  }

 private:
  void ReadRaw(uint64_t off, uint8_t* out, uint64_t n) {
    std::memcpy(out, st_->backing_->data + off, n);
  }
  std::unique_ptr<Device> base_;
  std::shared_ptr<FaultState> st_;
};

void FaultState::FailNthRead(uint64_t n) {
  std::lock_guard<std::mutex> l(mu_);
  fail_read_in_ = n;
}
void FaultState::FailNthWrite(uint64_t n) {
  std::lock_guard<std::mutex> l(mu_);
  fail_write_in_ = n;
}
void FaultState::SetFailAll(bool fail) {
  std::lock_guard<std::mutex> l(mu_);
  fail_all_ = fail;
}
void FaultState::SetSyncDelay(std::chrono::microseconds d) {
  std::lock_guard<std::mutex> l(mu_);
  sync_delay_ = d;
}
void FaultState::FlipBit(uint64_t offset, int bit) {
  std::lock_guard<std::mutex> l(mu_);
  if (backing_ && offset < backing_->size) backing_->data[offset] ^= uint8_t(1u << (bit & 7));
}
uint64_t FaultState::unsynced_writes() const {
  std::lock_guard<std::mutex> l(mu_);
  return undo_.size();
}
std::vector<uint64_t> FaultState::Find(std::span<const uint8_t> pattern) const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<uint64_t> out;
  if (!backing_ || pattern.empty() || pattern.size() > backing_->size) return out;
  const uint8_t* d = backing_->data;
  for (uint64_t i = 0; i + pattern.size() <= backing_->size; i += kSectorSize) {
    if (std::memcmp(d + i, pattern.data(), pattern.size()) == 0) out.push_back(i);
  }
  return out;
}

void FaultState::PowerCut(CutMode mode, uint64_t seed) {
  std::lock_guard<std::mutex> l(mu_);
  dead_ = true;
  if (!backing_) return;
  std::mt19937_64 rng(seed);
  // Undo newest first, so an older write's undo restores what was there before it.
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) {
    uint8_t* dst = backing_->data + it->offset;
    const uint64_t n = it->old_bytes.size();
    int choice = mode == CutMode::kDropAll ? 0 : int(rng() % 3);
    if (choice == 1) continue;  // this write made it to the media
    if (choice == 0) {
      std::memcpy(dst, it->old_bytes.data(), n);
      continue;
    }
    // Torn: each 512-byte sector independently old or new.
    for (uint64_t s = 0; s < n; s += kSectorSize) {
      if (rng() & 1) std::memcpy(dst + s, it->old_bytes.data() + s, kSectorSize);
    }
  }
  undo_.clear();
}
void FaultState::Revive() {
  std::lock_guard<std::mutex> l(mu_);
  dead_ = false;
  fail_all_ = false;
  fail_read_in_ = fail_write_in_ = 0;
}

std::shared_ptr<FaultState> FaultDeviceFactory::state(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  auto& s = states_[path];
  if (!s) s = std::make_shared<FaultState>();
  return s;
}

StatusOr<std::unique_ptr<Device>> FaultDeviceFactory::Open(const config::NvmePathConfig& path,
                                                           uint32_t queue_depth) {
  TW_ASSIGN_OR_RETURN(std::unique_ptr<Device> base, mem_.Open(path, queue_depth));
  std::shared_ptr<FaultState> st = state(path.path);
  {
    std::lock_guard<std::mutex> l(st->mu_);
    if (st->dead_) return ErrnoStatus(EIO, StrCat(path.path, ": device is powered off"));
  }
  {
    std::lock_guard<std::mutex> l(st->mu_);
    st->backing_ = mem_.backing(path.path);
  }
  return std::unique_ptr<Device>(new FaultDevice(std::move(base), st));
}

}  // namespace tw::store
