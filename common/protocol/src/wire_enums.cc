#include "tw/protocol/wire_enums.h"

namespace tw::protocol {

pb::Tier ToProto(Tier t) {
  switch (t) {
    case Tier::kNone:
      return pb::TIER_NONE;
    case Tier::kDram:
      return pb::TIER_DRAM;
    case Tier::kNvme:
      return pb::TIER_NVME;
    case Tier::kPeer:
      return pb::TIER_PEER;
  }
  return pb::TIER_NONE;
}

Tier FromProto(pb::Tier t) {
  switch (t) {
    case pb::TIER_DRAM:
      return Tier::kDram;
    case pb::TIER_NVME:
      return Tier::kNvme;
    case pb::TIER_PEER:
      return Tier::kPeer;
    default:
      return Tier::kNone;
  }
}

pb::MissReason ToProto(MissReason r) {
  switch (r) {
    case MissReason::kNone:
      return pb::MISS_REASON_NONE;
    case MissReason::kAbsent:
      return pb::MISS_REASON_ABSENT;
    case MissReason::kEvicted:
      return pb::MISS_REASON_EVICTED;
    case MissReason::kCorrupt:
      return pb::MISS_REASON_CORRUPT;
    case MissReason::kQuota:
      return pb::MISS_REASON_QUOTA;
    case MissReason::kDeadline:
      return pb::MISS_REASON_DEADLINE;
    case MissReason::kIoError:
      return pb::MISS_REASON_IO_ERROR;
    case MissReason::kPeerUnreachable:
      return pb::MISS_REASON_PEER_UNREACHABLE;
  }
  return pb::MISS_REASON_IO_ERROR;
}

MissReason FromProto(pb::MissReason r) {
  switch (r) {
    case pb::MISS_REASON_NONE:
      return MissReason::kNone;
    case pb::MISS_REASON_ABSENT:
      return MissReason::kAbsent;
    case pb::MISS_REASON_EVICTED:
      return MissReason::kEvicted;
    case pb::MISS_REASON_CORRUPT:
      return MissReason::kCorrupt;
    case pb::MISS_REASON_QUOTA:
      return MissReason::kQuota;
    case pb::MISS_REASON_DEADLINE:
      return MissReason::kDeadline;
    case pb::MISS_REASON_IO_ERROR:
      return MissReason::kIoError;
    case pb::MISS_REASON_PEER_UNREACHABLE:
      return MissReason::kPeerUnreachable;
    default:
      return MissReason::kIoError;
  }
}

pb::PutResult ToProto(PutResult r) {
  switch (r) {
    case PutResult::kStored:
      return pb::PUT_RESULT_STORED;
    case PutResult::kExists:
      return pb::PUT_RESULT_EXISTS;
    case PutResult::kRejectedAdmission:
      return pb::PUT_RESULT_REJECTED_ADMISSION;
    case PutResult::kQuota:
      return pb::PUT_RESULT_QUOTA;
    case PutResult::kBusy:
      return pb::PUT_RESULT_BUSY;
    case PutResult::kIoError:
      return pb::PUT_RESULT_IO_ERROR;
    case PutResult::kInvalid:
      return pb::PUT_RESULT_INVALID;
  }
  return pb::PUT_RESULT_INVALID;
}

PutResult FromProto(pb::PutResult r) {
  switch (r) {
    case pb::PUT_RESULT_STORED:
      return PutResult::kStored;
    case pb::PUT_RESULT_EXISTS:
      return PutResult::kExists;
    case pb::PUT_RESULT_REJECTED_ADMISSION:
      return PutResult::kRejectedAdmission;
    case pb::PUT_RESULT_QUOTA:
      return PutResult::kQuota;
    case pb::PUT_RESULT_BUSY:
      return PutResult::kBusy;
    case pb::PUT_RESULT_IO_ERROR:
      return PutResult::kIoError;
    default:
      return PutResult::kInvalid;
  }
}

pb::Durability ToProto(Durability d) {
  switch (d) {
    case Durability::kMemory:
      return pb::DURABILITY_MEMORY;
    case Durability::kDisk:
      return pb::DURABILITY_DISK;
    case Durability::kDefault:
      return pb::DURABILITY_DEFAULT;
  }
  return pb::DURABILITY_DEFAULT;
}

Durability FromProto(pb::Durability d) {
  switch (d) {
    case pb::DURABILITY_MEMORY:
      return Durability::kMemory;
    case pb::DURABILITY_DISK:
      return Durability::kDisk;
    default:
      return Durability::kDefault;
  }
}

}  // namespace tw::protocol
