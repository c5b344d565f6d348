// tw::store::Options — everything Store::Open() needs, and nothing of twd's wider
// configuration (sockets, mesh, GPU). twd converts its tw::config::Config into these
// (StoreOptionsFromConfig in twd's daemon); tests and tw-bench fill them directly.
//
// Every field has a default and a comment. Validate() names the first bad field; Open()
// refuses options that do not validate. Plain values: copy freely; no threading rules.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tw/common/status.h"
#include "tw/common/storage_policies.h"

namespace tw::store {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;  // Deadline::max() = none
using config::AdmissionPolicy;
using config::DramEviction;
using config::Durability;
using config::ReclaimOrder;

class DeviceFactory;  // tw/store/device.h

struct DramOptions {
  // Size of the DRAM tier arena, allocated once at open; 0 = no DRAM tier.
  uint64_t capacity = uint64_t{1} << 30;
  // Back the arena with 2 MiB hugepages (falls back to normal pages with a warning).
  bool hugepages = false;
  // mlock the arena and register it for DMA (needs IPC_LOCK).
  bool pinned = false;
  // Eviction policy of the DRAM tier.
  DramEviction eviction = DramEviction::kS3Fifo;
  // Start evicting when used/capacity exceeds this; evict down to low_watermark.
  double high_watermark = 0.95;
  double low_watermark = 0.85;
};

// One data path of the NVMe tier.
struct DevicePath {
  // A preallocated data file (created on first open) or a raw block device.
  std::string path;
  // Bytes of this path the store may use (for a block device: 0 = whole device).
  uint64_t capacity = 0;
};

struct NvmeOptions {
  // Data paths, one per device; a value is striped over all of them. Empty = no NVMe tier.
  std::vector<DevicePath> paths;
  // Size of a log-structured region (the unit of reclaim).
  uint64_t region_size = uint64_t{64} << 20;
  // Stripe unit across paths.
  uint64_t stripe_unit = uint64_t{4} << 20;
  // io_uring queue depth per ring.
  uint32_t queue_depth = 32;
  // Region reclaim order.
  ReclaimOrder reclaim = ReclaimOrder::kFifo;
  // Reclaim regions when used/capacity exceeds this, down to low_watermark.
  double high_watermark = 0.95;
  double low_watermark = 0.90;
  // Format a path even if it holds something that is neither ours nor zeros. Dangerous.
  bool force_format = false;
};

struct AdmissionOptions {
  // Which puts (and demotions) are written to NVMe.
  AdmissionPolicy policy = AdmissionPolicy::kAll;
  // NVMe write budget in bytes per second, for policy kWriteBudget.
  uint64_t write_budget = uint64_t{500} << 20;
};

struct QuotaOptions {
  // Namespace digest, 64 hex digits (Key::Hex()).
  std::string namespace_digest;
  // Bytes this namespace may hold across tiers; it evicts inside itself first.
  uint64_t bytes = 0;
};

struct Options {
  DramOptions dram;
  NvmeOptions nvme;
  AdmissionOptions admission;
  // Per-namespace quotas; a namespace not listed gets default_namespace_quota.
  std::vector<QuotaOptions> quotas;
  // Bytes a namespace without its own quota may hold; 0 = no limit.
  uint64_t default_namespace_quota = 0;
  // Keep the keys of evicted chunks for TakeEvicted() (the mesh withdraws them from their
  // homes). At most 65,536 wait; more are dropped (the mesh's soft state ages them out).
  bool report_evictions = false;
  // How long a lookup's read lease keeps its chunks from being reclaimed.
  std::chrono::nanoseconds lease_duration = std::chrono::seconds(5);
  // The devices of the NVMe paths: null = real files and block devices through io_uring.
  // Tests inject in-memory or fault-injecting devices (tw_store_testing).
  std::shared_ptr<DeviceFactory> device_factory;
  // The store's time: lease expiry and the admission write budget read it. Deadlines are the
  // caller's and always real time. Tests inject a clock they advance (FakeClock,
  // tests/testing/fake_clock.h).
  std::function<Clock::time_point()> now = Clock::now;

  // OK, or InvalidArgument naming the first bad field.
  Status Validate() const;
};

}  // namespace tw::store
