// Blocking socket I/O under a deadline for the mesh's raw wire (wire_codec.h): connect, send a
// set of buffers, receive exact byte counts or one frame. Every call waits in poll() for at most
// the time left to its deadline (Deadline::max(): no bound) and is interrupted by nothing else;
// the sockets are non-blocking. Errors: DEADLINE_EXCEEDED when the deadline passed first,
// UNAVAILABLE when the peer closed or reset the connection or could not be reached, INTERNAL for
// other errno values (the message names the call).
//
// Threading: free functions; a socket is used by one thread at a time.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "tw/common/status.h"
#include "tw/mesh/mesh_types.h"
#include "wire_codec.h"

namespace tw::mesh::net {

using Deadline = Clock::time_point;

// A connected, non-blocking TCP socket to address:port with TCP_NODELAY (the caller owns the fd).
StatusOr<int> WireConnect(const std::string& address, uint32_t port, Deadline deadline);

// Sets TCP_NODELAY and O_NONBLOCK on an accepted socket.
Status WirePrepareAccepted(int fd);

// Writes every byte of `iov` (modified as it is consumed).
Status WireSendAll(int fd, std::span<iovec> iov, Deadline deadline);

// Reads exactly `n` bytes into `dest`. `*got` (optional) counts the bytes read, also on error.
Status WireRecvAll(int fd, void* dest, size_t n, Deadline deadline, size_t* got = nullptr);

// Sends one frame.
Status WireSendFrame(int fd, WireType type, std::string_view body, Deadline deadline);

// Reads one frame's header and body. `*got` (optional) counts the bytes read, also on error.
struct WireFrame {
  WireHeader header;
  std::string body;
};
StatusOr<WireFrame> WireRecvFrame(int fd, Deadline deadline, size_t* got = nullptr);

}  // namespace tw::mesh::net
