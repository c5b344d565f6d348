#include "tw/common/cache_types.h"

namespace tw {

std::string_view ToString(Tier t) {
  switch (t) {
    case Tier::kNone:
      return "none";
    case Tier::kDram:
      return "dram";
    case Tier::kNvme:
      return "nvme";
    case Tier::kPeer:
      return "peer";
  }
  return "unknown";
}

std::string_view ToString(MissReason r) {
  switch (r) {
    case MissReason::kNone:
      return "none";
    case MissReason::kAbsent:
      return "absent";
    case MissReason::kEvicted:
      return "evicted";
    case MissReason::kCorrupt:
      return "corrupt";
    case MissReason::kQuota:
      return "quota";
    case MissReason::kDeadline:
      return "deadline";
    case MissReason::kIoError:
      return "io_error";
    case MissReason::kPeerUnreachable:
      return "peer_unreachable";
  }
  return "unknown";
}

std::string_view ToString(PutResult r) {
  switch (r) {
    case PutResult::kStored:
      return "stored";
    case PutResult::kExists:
      return "exists";
    case PutResult::kRejectedAdmission:
      return "rejected_admission";
    case PutResult::kQuota:
      return "quota";
    case PutResult::kBusy:
      return "busy";
    case PutResult::kIoError:
      return "io_error";
    case PutResult::kInvalid:
      return "invalid";
  }
  return "unknown";
}

std::string_view ToString(Durability d) {
  switch (d) {
    case Durability::kMemory:
      return "memory";
    case Durability::kDisk:
      return "disk";
    case Durability::kDefault:
      return "default";
  }
  return "unknown";
}

}  // namespace tw
