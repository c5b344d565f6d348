// IbVerbs: the Verbs interface over libibverbs (rdma-core), for real RDMA devices.
//
// OpenIbVerbs picks a device port: the device named by `mesh.rdma_device` (its first ACTIVE
// port), or else the first ACTIVE port of any device. The GID: on RoCE the first RoCE v2 GID
// of the port (IPv4-mapped first), on InfiniBand index 0; `gid_index` >= 0 forces one.
// Completion events come through a completion channel, so WaitCq sleeps in poll(2) rather
// than spinning.
//
// Threading and lifetime: those of verbs.h. ListIbDevices touches no device state and is safe
// to call from any thread; it returns an empty list (not an error) on a machine without RDMA.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tw/common/status.h"
#include "tw/mesh/rdma/verbs.h"

namespace tw::mesh::rdma {

struct IbPortInfo {
  uint8_t port = 0;
  std::string state;        // "ACTIVE", "DOWN", "INIT", ...
  std::string link_layer;   // "InfiniBand" or "Ethernet"
  uint32_t active_mtu = 0;  // bytes
  uint16_t lid = 0;
};

struct IbDeviceInfo {
  std::string name;
  std::vector<IbPortInfo> ports;
};

StatusOr<std::vector<IbDeviceInfo>> ListIbDevices();

// REQUIRES: gid_index in -1..255 (-1: choose as above).
StatusOr<std::unique_ptr<Verbs>> OpenIbVerbs(const std::string& device, int gid_index = -1);

}  // namespace tw::mesh::rdma
