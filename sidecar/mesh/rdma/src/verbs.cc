#include "tw/mesh/rdma/verbs.h"

namespace tw::mesh::rdma {

std::string_view ToString(QpState s) {
  switch (s) {
    case QpState::kReset:
      return "RESET";
    case QpState::kInit:
      return "INIT";
    case QpState::kRtr:
      return "RTR";
    case QpState::kRts:
      return "RTS";
    case QpState::kError:
      return "ERR";
  }
  return "unknown";
}

std::string_view ToString(WcStatus s) {
  switch (s) {
    case WcStatus::kSuccess:
      return "success";
    case WcStatus::kLocalProtectionError:
      return "local protection error";
    case WcStatus::kRemoteAccessError:
      return "remote access error";
    case WcStatus::kRetryExceeded:
      return "transport retry counter exceeded";
    case WcStatus::kFlushed:
      return "work request flushed";
    case WcStatus::kOther:
      return "other error";
  }
  return "unknown";
}

}  // namespace tw::mesh::rdma
