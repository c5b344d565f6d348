// tw-operator: the Kubernetes operator for TokenWarehouse objects. Flags: docs/operator.md.
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "tw/common/log.h"
#include "tw/common/units.h"
#include "tw/operator/operator.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

int Fail(const tw::Status& s) {
  std::cerr << "tw-operator: " << s.ToString() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tw-operator: reconciles TokenWarehouse objects into twd DaemonSets"};
  std::string kubeconfig;
  std::string ns;
  bool all_namespaces = false;
  bool leader_elect = false;
  std::string lease_duration = "15s", renew_deadline = "10s", retry_period = "2s";
  std::string lease_namespace, lease_name = "tw-operator-leader";
  std::string metrics_address = "0.0.0.0:8080", health_address = "0.0.0.0:8081";
  std::string twd_image = tw::op::RenderOptions{}.default_image;
  std::string log_level = "info";
  std::string watch_timeout = "300s";
  std::string resync = "10h";
  int workers = 2;
  std::string webhook_address, webhook_cert_dir, webhook_secret_namespace;
  std::string webhook_secret_name = "tw-operator-webhook-cert", webhook_config_name;
  std::vector<std::string> webhook_hosts;
  std::string webhook_validity = "8760h", webhook_check = "1m", webhook_request_timeout = "10s";
  app.add_option("--kubeconfig", kubeconfig,
                 "kubeconfig file (default: $KUBECONFIG, else in-cluster configuration)");
  app.add_option("--namespace", ns,
                 "namespace to watch (default: all namespaces; \"\" also means all)");
  app.add_flag("--all-namespaces", all_namespaces, "watch every namespace");
  app.add_flag("--leader-elect", leader_elect, "elect a leader through a coordination Lease");
  app.add_option("--lease-duration", lease_duration, "leader lease duration")
      ->capture_default_str();
  app.add_option("--renew-deadline", renew_deadline, "leader renew deadline")
      ->capture_default_str();
  app.add_option("--retry-period", retry_period, "leader election retry period")
      ->capture_default_str();
  app.add_option("--leader-election-namespace", lease_namespace,
                 "namespace of the Lease (default: --namespace, the kubeconfig's, or default)");
  app.add_option("--leader-election-id", lease_name, "name of the Lease")->capture_default_str();
  app.add_option("--metrics-address", metrics_address, "HOST:PORT of /metrics (\"\" = off)")
      ->capture_default_str();
  app.add_option("--health-address", health_address, "HOST:PORT of /healthz and /readyz")
      ->capture_default_str();
  app.add_option("--twd-image", twd_image, "twd image when spec.image is empty")
      ->capture_default_str();
  app.add_option("--workers", workers, "concurrent reconciles")->capture_default_str();
  app.add_option("--watch-timeout", watch_timeout,
                 "watches end after a random time in [T, 2T] and are re-opened")
      ->capture_default_str();
  app.add_option("--resync-period", resync, "re-queue every TokenWarehouse this often")
      ->capture_default_str();
  app.add_option("--webhook-address", webhook_address,
                 "HOST:PORT of the pod webhook's HTTPS endpoint (\"\" = no webhook)");
  app.add_option("--webhook-cert-dir", webhook_cert_dir,
                 "folder with tls.crt and tls.key (cert-manager); without it tw-operator makes "
                 "and rotates its own certificate in --webhook-secret-name");
  app.add_option("--webhook-secret-name", webhook_secret_name,
                 "Secret holding the webhook's certificate")
      ->capture_default_str();
  app.add_option("--webhook-secret-namespace", webhook_secret_namespace,
                 "namespace of that Secret (default: the leader election namespace)");
  app.add_option("--webhook-config-name", webhook_config_name,
                 "MutatingWebhookConfiguration whose caBundle tw-operator keeps (\"\" = none)");
  app.add_option("--webhook-host", webhook_hosts,
                 "DNS name or IP address the certificate names (repeatable; the Service's names)");
  app.add_option("--webhook-cert-validity", webhook_validity,
                 "lifetime of each webhook CA and certificate; replaced after two thirds")
      ->capture_default_str();
  app.add_option("--webhook-cert-check-interval", webhook_check,
                 "how often the certificate Secret or files are re-read")
      ->capture_default_str();
  app.add_option("--webhook-request-timeout", webhook_request_timeout,
                 "a webhook request must arrive completely within this time")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "debug, info, warn or error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto level = tw::log::ParseLevel(log_level, "--log-level");
  if (!level.ok()) return Fail(level.status());
  tw::log::SetLevel(*level);

  tw::op::OperatorOptions options;
  if (kubeconfig.empty() && std::getenv("KUBECONFIG") != nullptr)
    kubeconfig = std::getenv("KUBECONFIG");
  auto kube = kubeconfig.empty() ? tw::op::InClusterConfig() : tw::op::LoadKubeconfig(kubeconfig);
  if (!kube.ok()) return Fail(kube.status());
  options.kube = *kube;
  options.watch_namespace = all_namespaces ? "" : ns;
  options.leader_elect = leader_elect;
  auto parse_ms = [](const std::string& text, const char* flag) {
    auto d = tw::ParseDuration(text, flag);
    return d.ok() ? tw::StatusOr<std::chrono::milliseconds>(
                        std::chrono::duration_cast<std::chrono::milliseconds>(*d))
                  : tw::StatusOr<std::chrono::milliseconds>(d.status());
  };
  auto ld = parse_ms(lease_duration, "--lease-duration");
  auto rd = parse_ms(renew_deadline, "--renew-deadline");
  auto rp = parse_ms(retry_period, "--retry-period");
  auto wt = parse_ms(watch_timeout, "--watch-timeout");
  auto rs = parse_ms(resync, "--resync-period");
  auto wv = parse_ms(webhook_validity, "--webhook-cert-validity");
  auto wc = parse_ms(webhook_check, "--webhook-cert-check-interval");
  auto wr = parse_ms(webhook_request_timeout, "--webhook-request-timeout");
  for (const auto* d : {&ld, &rd, &rp, &wt, &rs, &wv, &wc, &wr}) {
    if (!d->ok()) return Fail(d->status());
  }
  options.leader_election.lease_duration = *ld;
  options.leader_election.renew_deadline = *rd;
  options.leader_election.retry_period = *rp;
  options.leader_election.lease_name = lease_name;
  options.leader_election.lease_namespace = !lease_namespace.empty() ? lease_namespace
                                            : !ns.empty()            ? ns
                                            : !kube->default_namespace.empty()
                                                ? kube->default_namespace
                                                : "default";
  options.metrics_address = metrics_address;
  options.health_address = health_address;
  options.render.default_image = twd_image;
  options.workers = workers;
  auto wt_s = std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::seconds>(*wt).count());
  options.min_watch_timeout = std::chrono::seconds(wt_s);
  options.max_watch_timeout = std::chrono::seconds(2 * wt_s);
  options.resync_period = *rs;
  auto& wh = options.webhook;
  wh.server.address = webhook_address;
  wh.server.request_timeout = *wr;
  wh.cert_dir = webhook_cert_dir;
  wh.check_interval = *wc;
  wh.certs.secret_name = webhook_secret_name;
  wh.certs.secret_namespace = !webhook_secret_namespace.empty()
                                  ? webhook_secret_namespace
                                  : options.leader_election.lease_namespace;
  wh.certs.webhook_config_name = webhook_config_name;
  wh.certs.hosts = webhook_hosts;
  wh.certs.validity = std::chrono::duration_cast<std::chrono::seconds>(*wv);

  auto op = tw::op::Operator::Create(options);
  if (!op.ok()) return Fail(op.status());
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  tw::Status started = (*op)->Start();
  if (!started.ok()) return Fail(started);
  // Ports are printed so scripts using ":0" can find them.
  std::cout << "tw-operator: identity=" << (*op)->identity()
            << " metrics_port=" << (*op)->metrics_port() << " health_port=" << (*op)->health_port()
            << " webhook=" << (webhook_address.empty() ? "off" : webhook_address) << std::endl;
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  TW_LOG(kInfo, "tw-operator stopping");
  (*op)->Stop();
  return 0;
}
