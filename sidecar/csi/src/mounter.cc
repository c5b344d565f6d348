#include "tw/csi/mounter.h"

#include <sys/mount.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

namespace tw::csi {
namespace {

// Undoes the \ooo escapes the kernel writes for ' ', '\t', '\n' and '\\' in mountinfo paths.
std::string Unescape(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() &&
        std::all_of(field.begin() + i + 1, field.begin() + i + 4,
                    [](char c) { return c >= '0' && c <= '7'; })) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                      (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

}  // namespace

StatusOr<std::vector<std::string>> ParseMountPoints(std::string_view mountinfo) {
  std::vector<std::string> points;
  size_t line_no = 0;
  while (!mountinfo.empty()) {
    size_t end = mountinfo.find('\n');
    std::string_view line = mountinfo.substr(0, end);
    mountinfo.remove_prefix(end == std::string_view::npos ? mountinfo.size() : end + 1);
    ++line_no;
    if (line.empty()) continue;
    // Fields: mount ID, parent ID, major:minor, root, mount point, ...
    std::string_view rest = line;
    std::string_view field;
    for (int i = 0; i < 5; ++i) {
      size_t start = rest.find_first_not_of(' ');
      if (start == std::string_view::npos) {
        return InvalidArgumentError("mountinfo line " + std::to_string(line_no) +
                                    " has fewer than 5 fields: \"" + std::string(line) + "\"");
      }
      rest.remove_prefix(start);
      size_t stop = rest.find(' ');
      field = rest.substr(0, stop);
      rest.remove_prefix(stop == std::string_view::npos ? rest.size() : stop);
    }
    points.push_back(Unescape(field));
  }
  return points;
}

StatusOr<bool> SystemMounter::IsMountPoint(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return ErrnoStatus(errno, "open /proc/self/mountinfo");
  std::ostringstream text;
  text << in.rdbuf();
  TW_ASSIGN_OR_RETURN(std::vector<std::string> points, ParseMountPoints(text.str()));
  return std::find(points.begin(), points.end(), path) != points.end();
}

Status SystemMounter::BindReadOnly(const std::string& source, const std::string& target) {
  if (::mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return ErrnoStatus(errno, "bind-mount " + source + " at " + target);
  }
  // A bind mount takes its flags from a second, remounting call.
  unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
  if (::mount(nullptr, target.c_str(), nullptr, flags, nullptr) != 0) {
    int err = errno;
    ::umount2(target.c_str(), MNT_DETACH);
    return ErrnoStatus(err, "remount " + target + " read-only");
  }
  return OkStatus();
}

Status SystemMounter::Unmount(const std::string& target) {
  if (::umount2(target.c_str(), 0) == 0) return OkStatus();
  int err = errno;
  if (err == EBUSY && ::umount2(target.c_str(), MNT_DETACH) == 0) return OkStatus();
  return ErrnoStatus(err, "unmount " + target);
}

}  // namespace tw::csi
