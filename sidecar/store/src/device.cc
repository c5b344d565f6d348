// Device base class: argument checks and byte counters around every implementation's I/O.
// The io_uring device lives in uring_device.cc; the in-memory and fault-injecting ones in the
// tw_store_testing library.
#include "tw/store/device.h"

#include <algorithm>

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

}  // namespace tw::store
