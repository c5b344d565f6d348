#include "tw/mesh/transport.h"

namespace tw::mesh {

std::string_view ToString(TransportKind kind) {
  switch (kind) {
    case TransportKind::kTcp:
      return "tcp";
    case TransportKind::kRdma:
      return "rdma";
  }
  return "unknown";
}

}  // namespace tw::mesh
