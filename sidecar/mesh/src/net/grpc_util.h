// Helpers shared by the peer service's server and client: deadline and status conversions,
// key fields, channel and server credentials. Private to tw_mesh_net.
//
// Pure functions; thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "tw/common/keys.h"
#include "tw/common/status.h"
#include "tw/mesh/mesh_types.h"
#include "tw/mesh/peer_tls.h"

namespace tw::mesh::net {

// gRPC deadlines are system_clock; ours are steady_clock.
inline std::chrono::system_clock::time_point ToSystem(Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) return std::chrono::system_clock::time_point::max();
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - Clock::now());
}
inline Clock::time_point FromSystem(std::chrono::system_clock::time_point deadline) {
  const auto left = deadline - std::chrono::system_clock::now();
  if (left > std::chrono::hours(24 * 365)) return Clock::time_point::max();
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(left);
}

// A gRPC status in our vocabulary (the codes share their numbers; the others become
// UNAVAILABLE, e.g. UNAUTHENTICATED: the peer cannot be used).
Status FromGrpc(const grpc::Status& status, const std::string& what);

// A 32-byte key field, or INVALID_ARGUMENT naming it.
StatusOr<Key> KeyField(const std::string& raw, const char* field);

// "host:port", bracketing IPv6 literals.
std::string Target(const std::string& address, uint32_t port);

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const PeerTls& tls);
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const PeerTls& tls);

}  // namespace tw::mesh::net
