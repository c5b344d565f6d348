// tw-csi: the CSI node plugin that hands inference pods twd's socket directory as an ephemeral
// inline volume of driver csi.tokenwarehouse.io (docs/inference-pods.md, docs/operator.md).
#include <csignal>
#include <iostream>

#include "CLI/CLI.hpp"
#include "tw/common/log.h"
#include "tw/csi/csi_server.h"

namespace {

int Fail(const tw::Status& s) {
  std::cerr << "tw-csi: " << s.ToString() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tw-csi: CSI node plugin that mounts Token Warehouse socket directories into pods"};
  tw::csi::CsiServerOptions options;
  options.vendor_version = TW_VERSION;
  std::string log_level = "info";
  app.add_option("--endpoint", options.endpoint, "unix:///PATH/csi.sock to serve CSI on")
      ->required();
  app.add_option("--node-id", options.node_id, "this node's id (the Kubernetes node name)")
      ->required();
  app.add_option("--socket-root", options.socket_root,
                 "directory holding one <namespace>/<name>/ socket directory per warehouse")
      ->required();
  app.add_option("--log-level", log_level, "debug, info, warn or error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto level = tw::log::ParseLevel(log_level, "--log-level");
  if (!level.ok()) return Fail(level.status());
  tw::log::SetLevel(*level);
  if (tw::Status s = options.Validate(); !s.ok()) return Fail(s);

  // Signals are taken by sigwait() below, never by a handler in a gRPC thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  tw::csi::SystemMounter mounter;
  auto server = tw::csi::CsiServer::Start(options, &mounter);
  if (!server.ok()) return Fail(server.status());
  int signal = 0;
  sigwait(&stop_signals, &signal);
  TW_LOG(kInfo, "tw-csi stopping", {{"signal", signal}});
  (*server)->Shutdown();
  return 0;
}
