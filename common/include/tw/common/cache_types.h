// Result vocabulary shared by the storage engine, twd and the client library: where a chunk
// lives, why a chunk was not served, what a put did and how durable a put asks to be. One
// definition, so the engine's answers, the metric labels and the client API can never disagree.
// The numbering is the C ABI's (tw_client.h: the C layer converts by cast). It is NOT the
// wire's: proto/tokenwarehouse/v1/client.proto numbers PutResult and Durability differently
// (0 is "unspecified"/"default" there); tw/protocol/wire_enums.h is the one mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tw {

// Where a chunk is stored, or was served from.
enum class Tier : uint8_t {
  kNone = 0,  // not stored
  kDram = 1,  // in the DRAM tier (possibly also on NVMe)
  kNvme = 2,  // on NVMe only
  kPeer = 3,  // on another node of the mesh (lookups); served from one (gets)
};
// "none", "dram", "nvme", "peer" (also the `tier` metric label).
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
inline constexpr size_t kMissReasonCount = 8;
static_assert(static_cast<size_t>(MissReason::kPeerUnreachable) + 1 == kMissReasonCount);
// "none", "absent", "evicted", "corrupt", "quota", "deadline", "io_error",
// "peer_unreachable" (also the `reason` metric label).
std::string_view ToString(MissReason r);

// What a put did. Every put answers one.
enum class PutResult : uint8_t {
  kStored = 0,             // stored with the requested durability
  kExists = 1,             // the key was already stored (or being stored): written once
  kRejectedAdmission = 2,  // the admission policy declined it
  kQuota = 3,              // the namespace is over its quota and nothing could be evicted
  kBusy = 4,               // no space or bandwidth before the deadline; retry later
  kIoError = 5,            // the device failed the write
  kInvalid = 6,            // refused: key, parent, tokens or scatter list wrong
};
inline constexpr size_t kPutResultCount = 7;
// "stored", "exists", "rejected_admission", "quota", "busy", "io_error", "invalid" (also the
// `result` metric label).
std::string_view ToString(PutResult r);

// Durability a put asks for.
enum class Durability : uint8_t {
  kMemory = 0,   // acknowledged on DRAM insert; written back in the background
  kDisk = 1,     // acknowledged once data and index are fdatasync'ed on NVMe
  kDefault = 2,  // twd's configured default_durability
};
// "memory", "disk", "default".
std::string_view ToString(Durability d);

}  // namespace tw
