#include "tw/gpu/backend.h"

#include <algorithm>

#include "fmt/format.h"

namespace tw::gpu {

std::string_view ToString(CopyKind kind) {
  switch (kind) {
    case CopyKind::kHostToDevice:
      return "host-to-device";
    case CopyKind::kDeviceToHost:
      return "device-to-host";
    case CopyKind::kDeviceToDevice:
      return "device-to-device";
  }
  return "unknown";
}

Status RegisterHostInSlices(Backend& backend, void* ptr, std::size_t bytes,
                            std::size_t slice_bytes) {
  if (slice_bytes == 0) return InvalidArgumentError("RegisterHostInSlices: zero slice size");
  char* base = static_cast<char*>(ptr);
  for (std::size_t off = 0; off < bytes; off += slice_bytes) {
    const std::size_t len = std::min(slice_bytes, bytes - off);
    Status status = backend.RegisterHost(base + off, len);
    if (!status.ok()) {
      for (std::size_t undo = 0; undo < off; undo += slice_bytes) {
        backend.UnregisterHost(base + undo).IgnoreError();  // best effort: the first error wins
      }
      return status.WithPrefix(
          fmt::format("registering slice at offset {} ({} bytes) of {}", off, len, bytes));
    }
  }
  return OkStatus();
}

Status UnregisterHostInSlices(Backend& backend, void* ptr, std::size_t bytes,
                              std::size_t slice_bytes) {
  if (slice_bytes == 0) return InvalidArgumentError("UnregisterHostInSlices: zero slice size");
  char* base = static_cast<char*>(ptr);
  Status first;
  for (std::size_t off = 0; off < bytes; off += slice_bytes) {
    Status status = backend.UnregisterHost(base + off);
    if (first.ok() && !status.ok()) first = status.WithPrefix(fmt::format("slice at {}", off));
  }
  return first;
}

}  // namespace tw::gpu
