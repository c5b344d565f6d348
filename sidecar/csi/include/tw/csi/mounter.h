// Mounter: the mount operations tw-csi needs (read-only bind mounts of a warehouse's socket
// directory), behind an interface so that the volume logic (socket_volumes.h) can be tested
// with a recording implementation where real mounts are impossible (not root).
//
// `SystemMounter` calls mount(2)/umount2(2) and reads /proc/self/mountinfo; it needs
// CAP_SYS_ADMIN in the mount namespace it changes (tw-csi runs privileged, with Bidirectional
// mount propagation, so its mounts reach the kubelet and the pods). Thread-safe: it holds no
// state; callers serialise operations on one path (SocketVolumes does).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tw/common/status.h"

namespace tw::csi {

class Mounter {
 public:
  virtual ~Mounter() = default;
  // True when `path` (absolute, normalised) is a mount point in this mount namespace.
  virtual StatusOr<bool> IsMountPoint(const std::string& path) = 0;
  // Bind-mounts directory `source` at directory `target`, read-only, nosuid, nodev, noexec.
  // On failure nothing stays mounted at `target`.
  virtual Status BindReadOnly(const std::string& source, const std::string& target) = 0;
  // Unmounts `target` (one mount: the topmost).
  virtual Status Unmount(const std::string& target) = 0;
};

class SystemMounter final : public Mounter {
 public:
  StatusOr<bool> IsMountPoint(const std::string& path) override;
  Status BindReadOnly(const std::string& source, const std::string& target) override;
  Status Unmount(const std::string& target) override;
};

// The mount points listed in the text of a /proc/<pid>/mountinfo file (field 5 of each line,
// with the kernel's octal escapes of space, tab, newline and backslash undone). Pure; lines
// that do not have five fields are an error naming the line.
StatusOr<std::vector<std::string>> ParseMountPoints(std::string_view mountinfo);

}  // namespace tw::csi
