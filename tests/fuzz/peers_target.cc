// Fuzz body of the mesh peers file: ParsePeersJson never throws, and every list it accepts
// either builds a Membership or is refused with a Status; a built one finds each of its peers.
#include <string_view>

#include "fuzz_targets.h"
#include "tw/mesh/membership.h"

namespace tw::fuzz {

int FuzzPeersJson(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto peers = mesh::ParsePeersJson(text);
  if (!peers.ok()) return 0;
  auto m = mesh::Membership::Create(*peers, 1);
  if (!m.ok()) return 0;
  for (const mesh::Peer& p : m->peers()) {
    if (m->Find(p.node) != &p || p.port == 0 || p.port > 65535 || !(p.weight > 0)) {
      __builtin_trap();  // Create() promised unique names, valid ports and weights
    }
  }
  return 1;
}

}  // namespace tw::fuzz
