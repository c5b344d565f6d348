#include "tw/mesh/mesh_types.h"

namespace tw::mesh {

std::string_view ToString(UpdateKind kind) {
  switch (kind) {
    case UpdateKind::kAnnounce:
      return "announce";
    case UpdateKind::kWithdraw:
      return "withdraw";
  }
  return "unknown";
}

}  // namespace tw::mesh
