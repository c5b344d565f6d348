// What the real devices share: opening and locking a data path, and the pread/pwrite device
// the io_uring factory falls back to when io_uring is refused (an old kernel, the sysctl
// kernel.io_uring_disabled, or a seccomp profile: the default profiles of Docker, podman and
// containerd refuse io_uring_setup). Internal to tw_store.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tw/common/status.h"
#include "tw/store/device.h"

namespace tw::store {

struct OpenedFile {
  int fd = -1;        // O_RDWR | O_DIRECT | O_CLOEXEC, flock(LOCK_EX) held
  uint64_t size = 0;  // usable bytes, a multiple of kIoAlign
};

// Opens `path` (creating and preallocating a missing file to its capacity) and takes its
// exclusive lock. FailedPrecondition when another process holds the lock.
StatusOr<OpenedFile> OpenDataFile(const DevicePath& path);

// The pread/pwrite device over an OpenedFile (takes ownership of the fd). `threads` workers run
// the requests of a batch in parallel (the calling thread runs one of them itself).
std::unique_ptr<Device> MakePsyncDevice(std::string name, OpenedFile file, uint32_t threads);
// Worker threads of a pread/pwrite device for a configured queue depth (2 to 16).
uint32_t PsyncThreads(uint32_t queue_depth);

}  // namespace tw::store
