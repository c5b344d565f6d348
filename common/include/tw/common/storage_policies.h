// The storage policy enums that both the store's options (tw/store/options.h) and twd's
// configuration (tw/common/config.h) name. They live here so that the store's public headers
// need not include twd's whole configuration. Their YAML names and ToString() are defined in
// config.cc. Plain values; no threading or lifetime rules.
#pragma once

#include <string_view>

namespace tw::config {

enum class Durability {
  kMemory,  // ack once the chunk is in DRAM; written to NVMe in the background
  kDisk,    // ack once data and index entry are fdatasync'ed on NVMe
};
enum class AdmissionPolicy {
  kAll,          // admit every put to NVMe
  kSecondSight,  // admit a key to NVMe the second time it is put or demoted
  kWriteBudget,  // admit while the NVMe write rate stays under admission.write_budget per second
};
enum class DramEviction {
  kS3Fifo,  // S3-FIFO: small probationary FIFO + main FIFO with reinsertion + ghost set
  kLru,     // plain least-recently-used
};
enum class ReclaimOrder {
  kFifo,  // reclaim the oldest-written region first (lowest write amplification)
  kLru,   // reclaim the least-recently-read region first
};

std::string_view ToString(Durability v);
std::string_view ToString(AdmissionPolicy v);
std::string_view ToString(DramEviction v);
std::string_view ToString(ReclaimOrder v);

}  // namespace tw::config
