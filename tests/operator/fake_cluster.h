// FakeCluster: a fake Kubernetes API server (tests/fakes/fake_apiserver.py, a child process on
// loopback, loaded with the CRDs of crds/) plus a KubeClient to drive it, and helpers the
// operator tests share: apply a TokenWarehouse, simulate twd pods and DaemonSet status (the
// fake runs no pods), inject faults, wait for a condition.
//
// Test-only; one instance per test. Not thread-safe except where a helper says so.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tw/operator/kube_client.h"
#include "tw/operator/operator.h"

namespace tw::op::testing {

using nlohmann::json;

class FakeCluster {
 public:
  // Starts the fake with `extra_args`; fails the test (ADD_FAILURE) if it does not come up.
  explicit FakeCluster(std::vector<std::string> extra_args = {});
  ~FakeCluster();

  bool ok() const { return client_ != nullptr; }
  const std::string& server() const { return server_; }
  KubeClient& client() { return *client_; }
  // A kubeconfig file pointing at the fake.
  std::string WriteKubeconfig();

  // Operator options for an in-process operator against this fake (fast watch timeouts, no
  // HTTP servers).
  OperatorOptions Options() const;

  // Server-side apply of a TokenWarehouse with field manager "test".
  StatusOr<json> ApplyTokenWarehouse(const std::string& ns, const std::string& name,
                                     const json& spec);
  StatusOr<json> Get(const ResourceType& type, const std::string& ns, const std::string& name);
  // Writes .status through the fake's admin API (what kubelet / the DaemonSet controller do).
  Status SetStatus(const std::string& api_version, const std::string& kind, const std::string& ns,
                   const std::string& name, const json& status);
  // Creates a twd pod of TokenWarehouse `tw` on `node` running the DaemonSet's current
  // template, with Ready=`ready`.
  Status AddPod(const std::string& ns, const std::string& tw, const std::string& node, bool ready,
                const std::string& ip);
  // POST /fake/<what> with `body`.
  Status Admin(const std::string& what, const json& body = json::object());
  // Every (verb, "plural[.group][/sub]") the fake served to clients whose user agent
  // contains `agent`.
  std::vector<std::pair<std::string, std::string>> VerbsUsedBy(const std::string& agent);

 private:
  std::string dir_;
  std::string server_;
  pid_t pid_ = -1;
  std::unique_ptr<KubeClient> client_;
};

// Polls `pred` every 50 ms until it is true or `timeout` passes; returns the last value.
bool Eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds(30));

// The condition `type` of a TokenWarehouse's status, or null.
json ConditionOf(const json& tw, const std::string& type);

// Reads a YAML manifest (one document) as JSON: quoted scalars stay strings, plain ones
// become numbers or booleans when they look like one.
StatusOr<json> YamlFileToJson(const std::string& path);

}  // namespace tw::op::testing
