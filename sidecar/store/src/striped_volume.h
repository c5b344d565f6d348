// StripedVolume: the data areas of all NVMe paths seen as one logical byte space, striped
// RAID-0 style in units of `stripe_unit`, so one large read or write uses every device.
//
//   logical L → stripe s = L / unit → device s % n, device offset
//               data_offset + (s / n) * unit + L % unit
//
// Threading: every method may be called from any thread; I/O to several devices runs in
// parallel (one helper thread per extra device). Lifetime: owns its devices.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "tw/common/status.h"
#include "tw/store/device.h"

namespace tw::store {

// A logical range ↔ memory.
struct VolumeIo {
  uint64_t offset = 0;  // logical, kIoAlign multiple
  uint64_t length = 0;  // kIoAlign multiple
  void* buf = nullptr;  // kIoAlign aligned
};

class StripedVolume {
 public:
  StripedVolume(std::vector<std::unique_ptr<Device>> devices, uint64_t data_offset,
                uint64_t per_device, uint64_t stripe_unit);

  uint64_t size() const { return per_device_ * devices_.size(); }
  size_t device_count() const { return devices_.size(); }
  Device& device(size_t i) { return *devices_[i]; }

  Status Read(std::span<const VolumeIo> ios) { return Run(false, ios); }
  Status Write(std::span<const VolumeIo> ios) { return Run(true, ios); }
  Status Read(uint64_t off, void* buf, uint64_t len) {
    VolumeIo io{off, len, buf};
    return Run(false, {&io, 1});
  }
  Status Write(uint64_t off, const void* buf, uint64_t len) {
    VolumeIo io{off, len, const_cast<void*>(buf)};
    return Run(true, {&io, 1});
  }
  // fdatasync on every device, in parallel.
  Status Sync();

  uint64_t bytes_read() const;
  uint64_t bytes_written() const;

 private:
  Status Run(bool write, std::span<const VolumeIo> ios);

  std::vector<std::unique_ptr<Device>> devices_;
  uint64_t data_offset_;
  uint64_t per_device_;
  uint64_t unit_;
};

}  // namespace tw::store
