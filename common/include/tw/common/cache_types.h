// Result vocabulary shared by the storage engine, twd and the client library: where a chunk
// lives and why a chunk was not served. One definition, so the engine's answers, the metric
// labels and the client API can never disagree. The numbering is also the wire's
// (proto/tokenwarehouse/v1/client.proto) and the C ABI's (tw_client.h).
#pragma once

#include <cstdint>
#include <string_view>

namespace tw {

// Where a chunk is stored, or was served from.
enum class Tier : uint8_t {
  kNone = 0,  // not stored
  kDram = 1,  // in the DRAM tier (possibly also on NVMe)
  kNvme = 2,  // on NVMe only
};
// "none", "dram", "nvme" (also the `tier` metric label).
std::string_view ToString(Tier t);

// Why a chunk could not be served. Every miss carries one.
enum class MissReason : uint8_t {
  kNone = 0,             // not a miss
  kAbsent = 1,           // never stored, removed long ago, or not visible to this tenant
  kEvicted = 2,          // recently evicted (still in the ghost set)
  kCorrupt = 3,          // stored bytes failed their checksum; the entry was dropped
  kQuota = 4,            // the namespace is over its quota
  kDeadline = 5,         // could not be served before the deadline
  kIoError = 6,          // the device failed the read
  kPeerUnreachable = 7,  // a peer holding it did not answer (mesh, second wave)
};
// "none", "absent", "evicted", "corrupt", "quota", "deadline", "io_error",
// "peer_unreachable" (also the `reason` metric label).
std::string_view ToString(MissReason r);

}  // namespace tw
