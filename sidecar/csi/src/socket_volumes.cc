#include "tw/csi/socket_volumes.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace tw::csi {
namespace fs = std::filesystem;
namespace {

// A Kubernetes object name or namespace as it may appear in a path: DNS-1123 characters,
// alphanumeric at both ends, at most 253 bytes. This also rules out "", "." and "..".
bool ValidName(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-' || c == '.'; });
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// The target path, absolute and without "." or ".." components.
StatusOr<std::string> CleanTarget(const std::string& target) {
  fs::path p(target);
  if (!p.is_absolute()) {
    return InvalidArgumentError("target_path \"" + target + "\" is not an absolute path");
  }
  std::string clean = p.lexically_normal().string();
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  if (clean == "/") return InvalidArgumentError("target_path must not be \"/\"");
  return clean;
}

StatusOr<std::string> RealPath(const std::string& path) {
  char* real = ::realpath(path.c_str(), nullptr);
  if (real == nullptr) return ErrnoStatus(errno, "resolve target_path " + path);
  std::string out(real);
  ::free(real);
  return out;
}

}  // namespace

SocketVolumes::SocketVolumes(std::string socket_root, Mounter* mounter)
    : socket_root_(std::move(socket_root)), mounter_(mounter) {}

std::vector<std::string> SocketVolumes::ListWarehouses() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& ns : fs::directory_iterator(socket_root_, ec)) {
    std::error_code ec2;
    if (!ns.is_directory(ec2) || !ValidName(ns.path().filename().string())) continue;
    for (const auto& wh : fs::directory_iterator(ns.path(), ec2)) {
      std::error_code ec3;
      if (!wh.is_directory(ec3) || !ValidName(wh.path().filename().string())) continue;
      out.push_back(ns.path().filename().string() + "/" + wh.path().filename().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

StatusOr<std::string> SocketVolumes::ResolveWarehouse(const std::string& warehouse,
                                                      const std::string& pod_namespace) const {
  std::string chosen;
  if (!warehouse.empty()) {
    std::string ns = pod_namespace, name = warehouse;
    if (size_t slash = warehouse.find('/'); slash != std::string::npos) {
      ns = warehouse.substr(0, slash);
      name = warehouse.substr(slash + 1);
    } else if (ns.empty()) {
      return InvalidArgumentError(
          "volume attribute warehouse=\"" + warehouse +
          "\" names no namespace and the request carries no pod namespace: write it as "
          "<namespace>/<name>");
    }
    if (!ValidName(ns) || !ValidName(name)) {
      return InvalidArgumentError("volume attribute warehouse=\"" + warehouse +
                                  "\" is not <name> or <namespace>/<name> (lower-case "
                                  "alphanumerics, '-' and '.')");
    }
    chosen = ns + "/" + name;
    std::error_code ec;
    if (!fs::is_directory(fs::path(socket_root_) / ns / name, ec)) {
      std::vector<std::string> here = ListWarehouses();
      return NotFoundError(
          "warehouse " + chosen + " has no socket directory on this node (" + socket_root_ + "/" +
          chosen + "); warehouses here: " + (here.empty() ? std::string("none") : Join(here)));
    }
  } else {
    std::vector<std::string> all = ListWarehouses();
    std::vector<std::string> same_ns;
    for (const auto& w : all) {
      if (!pod_namespace.empty() && w.starts_with(pod_namespace + "/")) same_ns.push_back(w);
    }
    if (same_ns.size() == 1) {
      chosen = same_ns.front();
    } else if (all.size() == 1) {
      chosen = all.front();
    } else if (all.empty()) {
      return FailedPreconditionError("no warehouse socket directory under " + socket_root_ +
                                     ": no TokenWarehouse's twd has started on this node");
    } else {
      return FailedPreconditionError("several warehouses on this node (" + Join(all) +
                                     "): name one with the volume attribute warehouse");
    }
  }
  return socket_root_ + "/" + chosen;
}

Status SocketVolumes::Publish(const PublishRequest& request) {
  if (request.volume_id.empty()) return InvalidArgumentError("volume_id is empty");
  TW_ASSIGN_OR_RETURN(std::string target, CleanTarget(request.target_path));
  TW_ASSIGN_OR_RETURN(std::string source,
                      ResolveWarehouse(request.warehouse, request.pod_namespace));
  std::lock_guard lock(mu_);

  struct stat target_st {};
  bool created = false;
  if (::stat(target.c_str(), &target_st) == 0) {
    if (!S_ISDIR(target_st.st_mode)) {
      return FailedPreconditionError("target_path " + target + " exists and is not a directory");
    }
  } else if (errno == ENOENT) {
    std::error_code ec;
    fs::create_directories(target, ec);
    if (ec) return ErrnoStatus(ec.value(), "create target_path " + target);
    created = true;
  } else {
    return ErrnoStatus(errno, "stat target_path " + target);
  }
  // Mount tables list resolved paths: a target under a symlink (/var/lib/kubelet often is one)
  // must be looked up by its real path.
  TW_ASSIGN_OR_RETURN(std::string real, RealPath(target));
  if (!created) {
    TW_ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(real));
    if (mounted) {
      struct stat source_st {};
      if (::stat(source.c_str(), &source_st) != 0) return ErrnoStatus(errno, "stat " + source);
      if (source_st.st_dev == target_st.st_dev && source_st.st_ino == target_st.st_ino) {
        return OkStatus();  // published before: the same directory is mounted there
      }
      return AlreadyExistsError("target_path " + target +
                                " already has something else mounted (not " + source + ")");
    }
  }
  Status s = mounter_->BindReadOnly(source, real);
  if (!s.ok() && created) ::rmdir(real.c_str());
  return s;
}

Status SocketVolumes::Unpublish(const std::string& volume_id, const std::string& target_path) {
  if (volume_id.empty()) return InvalidArgumentError("volume_id is empty");
  TW_ASSIGN_OR_RETURN(std::string target, CleanTarget(target_path));
  std::lock_guard lock(mu_);

  struct stat st {};
  if (::lstat(target.c_str(), &st) != 0) {
    if (errno == ENOENT) return OkStatus();  // unpublished before, or never published
    return ErrnoStatus(errno, "stat target_path " + target);
  }
  TW_ASSIGN_OR_RETURN(std::string real, RealPath(target));
  // Stacked mounts (a publish repeated by hand) come off one by one.
  for (int i = 0; i < 16; ++i) {
    TW_ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(real));
    if (!mounted) break;
    TW_RETURN_IF_ERROR(mounter_->Unmount(real));
  }
  if (::rmdir(real.c_str()) != 0) {
    if (errno == ENOENT) return OkStatus();
    if (errno == ENOTEMPTY || errno == EEXIST || errno == ENOTDIR) {
      return FailedPreconditionError("target_path " + target +
                                     " is not a mount of this driver and not an empty "
                                     "directory: left in place");
    }
    return ErrnoStatus(errno, "remove target_path " + target);
  }
  return OkStatus();
}

}  // namespace tw::csi
