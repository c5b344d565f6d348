#include "striped_volume.h"

#include <future>

#include "tw/common/strings.h"

namespace tw::store {

StripedVolume::StripedVolume(std::vector<std::unique_ptr<Device>> devices, uint64_t data_offset,
                             uint64_t per_device, uint64_t stripe_unit)
    : devices_(std::move(devices)),
      data_offset_(data_offset),
      per_device_(per_device),
      unit_(stripe_unit) {}

Status StripedVolume::Run(bool write, std::span<const VolumeIo> ios) {
  const uint64_t n = devices_.size();
  std::vector<std::vector<IoRequest>> per(n);
  for (const VolumeIo& io : ios) {
    if (io.offset + io.length > size()) {
      return InvalidArgumentError(StrCat("volume I/O past the end: ", io.offset, "+", io.length));
    }
    uint64_t done = 0;
    while (done < io.length) {
      uint64_t l = io.offset + done;
      uint64_t s = l / unit_;
      uint64_t in = l % unit_;
      uint64_t len = std::min(unit_ - in, io.length - done);
      uint64_t dev = s % n;
      uint64_t doff = data_offset_ + (s / n) * unit_ + in;
      per[dev].push_back({write, doff, len, static_cast<uint8_t*>(io.buf) + done});
      done += len;
    }
  }
  std::vector<std::future<Status>> others;
  size_t first = n;
  for (size_t d = 0; d < n; ++d) {
    if (per[d].empty()) continue;
    if (first == n) {
      first = d;
      continue;
    }
    others.push_back(
        std::async(std::launch::async, [this, d, &per] { return devices_[d]->Submit(per[d]); }));
  }
  Status s;
  if (first != n) s = devices_[first]->Submit(per[first]);
  for (auto& f : others) {
    Status o = f.get();
    if (s.ok() && !o.ok()) s = o;
  }
  return s;
}

Status StripedVolume::Sync() {
  if (devices_.size() == 1) return devices_[0]->Sync();
  std::vector<std::future<Status>> fs;
  for (size_t d = 1; d < devices_.size(); ++d) {
    fs.push_back(std::async(std::launch::async, [this, d] { return devices_[d]->Sync(); }));
  }
  Status s = devices_[0]->Sync();
  for (auto& f : fs) {
    Status o = f.get();
    if (s.ok() && !o.ok()) s = o;
  }
  return s;
}

uint64_t StripedVolume::bytes_read() const {
  uint64_t t = 0;
  for (auto& d : devices_) t += d->bytes_read();
  return t;
}
uint64_t StripedVolume::bytes_written() const {
  uint64_t t = 0;
  for (auto& d : devices_) t += d->bytes_written();
  return t;
}

}  // namespace tw::store
