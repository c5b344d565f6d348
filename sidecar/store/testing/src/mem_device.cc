// In-memory devices: anonymous mappings keyed by path.
#include "tw/store/testing/mem_device.h"

#include <sys/mman.h>

#include <atomic>
#include <cstring>

#include "tw/common/strings.h"

namespace tw::store {

MemDeviceFactory::Backing::Backing(uint64_t n) : size(n) {
  void* p =
      mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  data = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
}

MemDeviceFactory::Backing::~Backing() {
  if (data) munmap(data, size);
}

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

StatusOr<std::unique_ptr<Device>> MemDeviceFactory::Open(const DevicePath& path,
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

}  // namespace tw::store
