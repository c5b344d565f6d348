// MemDeviceFactory: in-memory devices for tests (tw_store_testing; production binaries never
// link it). A path's bytes live in an anonymous mapping that outlives the Device: reopening the
// path after its Device was destroyed finds the same bytes, which is how tests "restart" a
// store. One Device per path at a time (a second Open is refused, like flock on a real file).
//
// Threading: the factory is thread-safe; a Device follows tw/store/device.h.
// Lifetime: the bytes live as long as the factory (or a FaultState holding them).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "tw/store/device.h"

namespace tw::store {

// In-memory devices, keyed by path: a path reopened after its Device was destroyed finds the
// same bytes (that is how tests "restart" a store). Thread-safe.
class MemDeviceFactory : public DeviceFactory {
 public:
  StatusOr<std::unique_ptr<Device>> Open(const DevicePath& path, uint32_t queue_depth) override;

  // The bytes of one path: an anonymous mapping of `size` bytes (null when it failed).
  struct Backing {
    explicit Backing(uint64_t n);
    ~Backing();
    Backing(const Backing&) = delete;
    Backing& operator=(const Backing&) = delete;
    uint64_t size;
    uint8_t* data;
    std::atomic<bool> open{false};  // a Device holds the path
  };
  // The bytes behind `path` (null before its first Open).
  std::shared_ptr<Backing> backing(const std::string& path);

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Backing>> backings_;
};

}  // namespace tw::store
