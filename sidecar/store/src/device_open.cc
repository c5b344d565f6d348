#include "device_open.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "tw/common/strings.h"

namespace tw::store {

StatusOr<OpenedFile> OpenDataFile(const DevicePath& path) {
  const std::string& p = path.path;
  struct stat st {};
  bool exists = stat(p.c_str(), &st) == 0;
  int flags = O_RDWR | O_DIRECT | O_CLOEXEC;
  if (!exists) flags |= O_CREAT;
  int fd = open(p.c_str(), flags, 0600);
  if (fd < 0) return ErrnoStatus(errno, StrCat("open ", p));
  auto fail = [fd](Status s) {
    close(fd);  // also drops the flock
    return s;
  };
  // A process killed a moment ago may still hold the lock while the kernel tears down its
  // io_uring (asynchronously): wait up to a second before calling the path taken.
  int rc = 0, e = 0;
  for (int tries = 0;; ++tries) {
    rc = flock(fd, LOCK_EX | LOCK_NB);
    e = errno;
    if (rc == 0 || e != EWOULDBLOCK || tries >= 100) break;
    usleep(10000);
  }
  if (rc != 0) {
    if (e == EWOULDBLOCK) {
      return fail(FailedPreconditionError(
          StrCat(p, ": locked by another process (two stores never share a data path)")));
    }
    return fail(ErrnoStatus(e, StrCat("flock ", p)));
  }
  if (fstat(fd, &st) != 0) return fail(ErrnoStatus(errno, StrCat("fstat ", p)));
  uint64_t size = 0;
  if (S_ISBLK(st.st_mode)) {
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) {
      return fail(ErrnoStatus(errno, StrCat("BLKGETSIZE64 ", p)));
    }
    if (path.capacity != 0 && path.capacity < size) size = path.capacity;
  } else if (S_ISREG(st.st_mode)) {
    size = path.capacity;
    if (size == 0) size = uint64_t(st.st_size);
    if (size == 0) return fail(InvalidArgumentError(StrCat(p, ": a data file needs a capacity")));
    if (uint64_t(st.st_size) < size) {
      int r = posix_fallocate(fd, 0, off_t(size));
      if (r == EOPNOTSUPP || r == EINVAL) r = ftruncate(fd, off_t(size)) == 0 ? 0 : errno;
      if (r != 0) return fail(ErrnoStatus(r, StrCat("preallocate ", size, " bytes for ", p)));
      if (fsync(fd) != 0) return fail(ErrnoStatus(errno, StrCat("fsync ", p)));
    }
  } else {
    return fail(InvalidArgumentError(StrCat(p, ": neither a regular file nor a block device")));
  }
  size -= size % kIoAlign;
  return OpenedFile{fd, size};
}

}  // namespace tw::store
