// FaultDeviceFactory: in-memory devices with injected faults, for crash and corruption tests
// (tw_store_testing; production binaries never link it): failed reads and writes, a path
// that vanishes, slow syncs, flipped bits, and power cuts that undo, keep or tear the writes
// not yet synced.
//
// Threading: every method is thread-safe. Lifetime: the test keeps the factory; each path's
// FaultState lives as long as the factory or whoever holds it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "tw/store/device.h"
#include "tw/store/testing/mem_device.h"

namespace tw::store {

// The knobs of one fault-injected path. Shared between the factory, the devices it opened and
// the test; every method is thread-safe.
class FaultState {
 public:
  // What happens to writes not yet synced at PowerCut().
  enum class CutMode {
    kDropAll = 0,  // every unsynced write is lost
    kRandom = 1,   // each unsynced write is kept, lost, or torn at a 512-byte boundary
  };

  // Fails the n-th read (or write) request from now (1 = the next); 0 disables.
  void FailNthRead(uint64_t n);
  void FailNthWrite(uint64_t n);
  // Fails every request (EIO) until cleared: a path that vanished.
  void SetFailAll(bool fail);
  // Makes every sync take at least `d` (0 disables): a slow device, so that commits lag
  // behind writes.
  void SetSyncDelay(std::chrono::microseconds d);
  // Flips one bit of the stored bytes (durable immediately).
  void FlipBit(uint64_t offset, int bit);
  // Simulates power loss: unsynced writes are undone per `mode` (seeded), and the device fails
  // every request until Revive().
  void PowerCut(CutMode mode, uint64_t seed);
  void Revive();

  uint64_t unsynced_writes() const;
  // Offsets where `pattern` occurs in the stored bytes (tests locate records with it).
  std::vector<uint64_t> Find(std::span<const uint8_t> pattern) const;

 private:
  friend class FaultDevice;
  friend class FaultDeviceFactory;
  struct Undo {
    uint64_t offset;
    std::vector<uint8_t> old_bytes;
  };
  mutable std::mutex mu_;
  uint64_t fail_read_in_ = 0;
  uint64_t fail_write_in_ = 0;
  bool fail_all_ = false;
  bool dead_ = false;
  std::chrono::microseconds sync_delay_{0};
  std::vector<Undo> undo_;
  Device* base_ = nullptr;  // the in-memory device of the currently open FaultDevice
  std::shared_ptr<MemDeviceFactory::Backing> backing_;
};

// In-memory devices with faults. The test keeps the factory and reaches each path's
// FaultState with state(path).
class FaultDeviceFactory : public DeviceFactory {
 public:
  StatusOr<std::unique_ptr<Device>> Open(const DevicePath& path, uint32_t queue_depth) override;
  std::shared_ptr<FaultState> state(const std::string& path);

 private:
  MemDeviceFactory mem_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<FaultState>> states_;
};

}  // namespace tw::store
