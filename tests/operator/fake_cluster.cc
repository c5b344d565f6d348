#include "fake_cluster.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "tw/common/strings.h"
#include "tw/operator/render.h"
#include "yaml-cpp/yaml.h"

namespace tw::op::testing {

FakeCluster::FakeCluster(std::vector<std::string> extra_args) {
  char tmpl[] = "/tmp/tw_fake_cluster_XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return;
  }
  dir_ = tmpl;
  std::string src = TW_SOURCE_DIR;
  std::string port_file = dir_ + "/port";
  std::vector<std::string> args = {"/usr/bin/python3",    src + "/tests/fakes/fake_apiserver.py",
                                   "--port-file",         port_file,
                                   "--crd-dir",           src + "/crds",
                                   "--bookmark-interval", "0.5",
                                   "--namespace",         "inference"};
  for (auto& a : extra_args) args.push_back(a);
  pid_ = fork();
  if (pid_ == 0) {
    std::string log = dir_ + "/fake.log";
    FILE* f = freopen(log.c_str(), "w", stderr);
    (void)f;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int port = 0;
  for (int i = 0; i < 400 && port == 0; ++i) {
    std::ifstream in(port_file);
    if (!(in >> port)) {
      port = 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }
  if (port == 0) {
    ADD_FAILURE() << "fake API server did not start (see " << dir_ << "/fake.log)";
    return;
  }
  server_ = StrCat("http://127.0.0.1:", port);
  KubeConfig cfg;
  cfg.server = server_;
  cfg.user_agent = "fake-cluster-test/1";  // kept apart from the operator's requests
  auto client = KubeClient::Create(cfg);
  if (!client.ok()) {
    ADD_FAILURE() << client.status().ToString();
    return;
  }
  client_ = std::move(*client);
}

FakeCluster::~FakeCluster() {
  client_.reset();
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 100; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }
  // Kept for a post-mortem (fake.log) when the test failed.
  if (!dir_.empty() && !::testing::Test::HasFailure()) std::filesystem::remove_all(dir_);
}

std::string FakeCluster::WriteKubeconfig() {
  std::string path = dir_ + "/kubeconfig";
  std::ofstream(path) << "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
                      << "clusters:\n- name: fake\n  cluster:\n    server: " << server_ << "\n"
                      << "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: test\n"
                      << "users:\n- name: test\n  user:\n    token: test-token\n";
  return path;
}

OperatorOptions FakeCluster::Options() const {
  OperatorOptions o;
  o.kube.server = server_;
  o.workers = 2;
  o.min_watch_timeout = std::chrono::seconds(5);
  o.max_watch_timeout = std::chrono::seconds(10);
  o.rate_limiter.item_base_delay = std::chrono::milliseconds(20);
  o.rate_limiter.item_max_delay = std::chrono::seconds(2);
  o.leader_election.lease_namespace = "default";
  return o;
}

StatusOr<json> FakeCluster::ApplyTokenWarehouse(const std::string& ns, const std::string& name,
                                                const json& spec) {
  json obj = {{"apiVersion", "tokenwarehouse.io/v1alpha1"},
              {"kind", "TokenWarehouse"},
              {"metadata", {{"name", name}, {"namespace", ns}}},
              {"spec", spec}};
  return client_->Apply(kinds::kTokenWarehouse, ns, name, obj, "test", true);
}

StatusOr<json> FakeCluster::Get(const ResourceType& type, const std::string& ns,
                                const std::string& name) {
  return client_->Get(type, ns, name);
}

Status FakeCluster::Admin(const std::string& what, const json& body) {
  TW_ASSIGN_OR_RETURN(HttpResponse resp, client_->Do("POST", "/fake/" + what, body.dump()));
  if (resp.status != 200) return ApiError(resp.status, resp.body);
  return OkStatus();
}

Status FakeCluster::SetStatus(const std::string& api_version, const std::string& kind,
                              const std::string& ns, const std::string& name, const json& status) {
  return Admin("set-status", {{"apiVersion", api_version},
                              {"kind", kind},
                              {"namespace", ns},
                              {"name", name},
                              {"status", status}});
}

Status FakeCluster::AddPod(const std::string& ns, const std::string& tw, const std::string& node,
                           bool ready, const std::string& ip) {
  TW_ASSIGN_OR_RETURN(json ds, client_->Get(kinds::kDaemonSet, ns, DaemonSetName(tw)));
  json tmpl = ds["spec"]["template"];
  std::string name = StrCat(DaemonSetName(tw), "-", node);
  json pod = {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata",
       {{"name", name},
        {"namespace", ns},
        {"labels", tmpl["metadata"]["labels"]},
        {"annotations", tmpl["metadata"]["annotations"]}}},
      {"spec",
       {{"nodeName", node}, {"containers", json::array({{{"name", "twd"}, {"image", "twd"}}})}}}};
  auto created = client_->Create(kinds::kPod, ns, pod);
  if (!created.ok() && created.status().code() != StatusCode::kAlreadyExists) {
    return created.status();
  }
  json status = {{"phase", "Running"},
                 {"podIP", ip},
                 {"conditions", json::array({{{"type", "Ready"},
                                              {"status", ready ? "True" : "False"},
                                              {"reason", ready ? "" : "ContainersNotReady"}}})}};
  return SetStatus("v1", "Pod", ns, name, status);
}

std::vector<std::pair<std::string, std::string>> FakeCluster::VerbsUsedBy(
    const std::string& agent) {
  std::vector<std::pair<std::string, std::string>> out;
  auto resp = client_->Do("GET", "/fake/requests?user_agent=" + UrlEncode(agent));
  if (!resp.ok() || resp->status != 200) return out;
  json list = json::parse(resp->body);
  for (const auto& r : list["requests"]) {
    // "plural[.group][/subresource]", as RBAC rules and docs/operator.md spell it.
    std::string resource = r.value("resource", "");
    std::string group = r.value("group", "");
    if (!group.empty()) {
      auto slash = resource.find('/');
      resource = slash == std::string::npos
                     ? resource + "." + group
                     : resource.substr(0, slash) + "." + group + resource.substr(slash);
    }
    std::pair<std::string, std::string> p{r.value("verb", ""), resource};
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  }
  return out;
}

bool Eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() > deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

json ConditionOf(const json& tw, const std::string& type) {
  for (const auto& c : tw.value("status", json::object()).value("conditions", json::array())) {
    if (c.value("type", "") == type) return c;
  }
  return nullptr;
}

namespace {
json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& kv : node) out[kv.first.as<std::string>()] = YamlToJson(kv.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const auto& item : node) out.push_back(YamlToJson(item));
      return out;
    }
    case YAML::NodeType::Scalar: {
      std::string s = node.Scalar();
      if (node.Tag() == "!") return s;  // quoted
      if (s == "true") return true;
      if (s == "false") return false;
      char* end = nullptr;
      long long i = std::strtoll(s.c_str(), &end, 10);
      if (!s.empty() && *end == '\0') return i;
      double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && *end == '\0') return d;
      return s;
    }
    default:
      return nullptr;
  }
}
}  // namespace

StatusOr<json> YamlFileToJson(const std::string& path) {
  try {
    return YamlToJson(YAML::LoadFile(path));
  } catch (const std::exception& e) {
    return InvalidArgumentError(StrCat(path, ": ", e.what()));
  }
}

}  // namespace tw::op::testing
