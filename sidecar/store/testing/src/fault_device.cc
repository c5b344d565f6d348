// The fault-injecting device: an in-memory device whose writes are recorded until synced, so
// a power cut can undo, keep or tear each of them.
#include "tw/store/testing/fault_device.h"

#include <cerrno>
#include <cstring>
#include <random>
#include <thread>

#include "tw/common/strings.h"

namespace tw::store {

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

StatusOr<std::unique_ptr<Device>> FaultDeviceFactory::Open(const DevicePath& path,
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
