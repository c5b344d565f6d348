#include "unix_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "tw/common/log.h"
#include "tw/common/strings.h"

namespace tw::twd {

ListeningSocket::~ListeningSocket() { Close(); }

void ListeningSocket::Close() {
  if (fd.valid()) {
    fd.Reset();
    ::unlink(path.c_str());
  }
  lock.Reset();
}

StatusOr<ListeningSocket> Listen(const std::string& path, uint32_t mode, const std::string& group) {
  struct sockaddr_un addr;
  std::memset(&addr, 0, sizeof addr);
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return InvalidArgumentError(StrCat("socket path '", path, "' is empty or longer than ",
                                       sizeof addr.sun_path - 1, " bytes"));
  }
  ListeningSocket s;
  s.path = path;
  const std::string lock_path = path + ".lock";
  s.lock.Reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!s.lock.valid()) return ErrnoStatus(errno, StrCat("open ", lock_path));
  if (::flock(s.lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return FailedPreconditionError(
          StrCat("another twd is serving ", path, " (", lock_path, " is locked)"));
    }
    return ErrnoStatus(errno, StrCat("flock ", lock_path));
  }
  // We hold the lock: whatever is at `path` was left by a process that is gone.
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return FailedPreconditionError(StrCat(path, " exists and is not a socket; not replacing it"));
    }
    TW_LOG(kInfo, "replacing stale socket", {{"path", path}});
    if (::unlink(path.c_str()) != 0) return ErrnoStatus(errno, StrCat("unlink ", path));
  }
  s.fd.Reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.fd.valid()) return ErrnoStatus(errno, "socket(AF_UNIX)");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::bind(s.fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) {
    return ErrnoStatus(errno, StrCat("bind ", path));
  }
  if (::chmod(path.c_str(), mode) != 0) return ErrnoStatus(errno, StrCat("chmod ", path));
  if (!group.empty()) {
    std::vector<char> buf(16384);
    struct group gr, *res = nullptr;
    if (::getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &res) != 0 || res == nullptr) {
      return NotFoundError(StrCat("socket.group: no group named '", group, "'"));
    }
    if (::chown(path.c_str(), static_cast<uid_t>(-1), gr.gr_gid) != 0) {
      return ErrnoStatus(errno, StrCat("chown ", path, " to group ", group));
    }
  }
  if (::listen(s.fd.get(), 512) != 0) return ErrnoStatus(errno, StrCat("listen ", path));
  return s;
}

PeerCredentials PeerOf(int fd) {
  PeerCredentials peer;
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    peer.pid = cred.pid;
    peer.uid = cred.uid;
    peer.gid = cred.gid;
  }
  // SO_PEERGROUPS answers ERANGE with the needed length when the buffer is too small.
  std::vector<gid_t> groups(16);
  for (int attempt = 0; attempt < 4; ++attempt) {
    socklen_t bytes = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &bytes) == 0) {
      groups.resize(bytes / sizeof(gid_t));
      peer.groups = std::move(groups);
      break;
    }
    if (errno != ERANGE) break;
    groups.resize(bytes / sizeof(gid_t) + 1);
  }
  return peer;
}

}  // namespace tw::twd
