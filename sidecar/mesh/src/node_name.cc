#include "tw/mesh/node_name.h"

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>

namespace tw::mesh {

NodeNameSources NodeNameSources::System() {
  NodeNameSources s;
  s.getenv = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
  s.hostname = []() -> StatusOr<std::string> {
    char buf[HOST_NAME_MAX + 1] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return ErrnoStatus(errno, "gethostname");
    return std::string(buf);
  };
  return s;
}

StatusOr<std::string> ResolveNodeName(std::string_view configured, const NodeNameSources& sources) {
  if (!configured.empty()) return std::string(configured);
  if (sources.getenv) {
    std::optional<std::string> env = sources.getenv("TW_NODE_NAME");
    if (env && !env->empty()) return *std::move(env);
  }
  std::string why = "empty";
  if (sources.hostname) {
    StatusOr<std::string> host = sources.hostname();
    if (host.ok() && !host->empty()) return *std::move(host);
    if (!host.ok()) why = host.status().ToString();
  }
  return FailedPreconditionError(
      "mesh.node_name: not set, TW_NODE_NAME unset or empty, and the hostname is " + why);
}

}  // namespace tw::mesh
