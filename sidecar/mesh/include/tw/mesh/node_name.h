// This node's name in the mesh: `mesh.node_name` from the config, else the environment
// variable TW_NODE_NAME (the DaemonSet sets it from spec.nodeName), else the hostname.
//
// Pure given its sources: tests inject the environment and the hostname. Thread-safe.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "tw/common/status.h"

namespace tw::mesh {

struct NodeNameSources {
  // Reads an environment variable (nullopt when unset). Default: std::getenv.
  std::function<std::optional<std::string>(const char* name)> getenv;
  // This machine's hostname. Default: gethostname(2).
  std::function<StatusOr<std::string>()> hostname;

  // The process's real environment and hostname.
  static NodeNameSources System();
};

// The first non-empty of: `configured`, TW_NODE_NAME, the hostname. FAILED_PRECONDITION when
// all three are empty (or the hostname cannot be read), naming the three places looked at.
StatusOr<std::string> ResolveNodeName(std::string_view configured,
                                      const NodeNameSources& sources = NodeNameSources::System());

}  // namespace tw::mesh
