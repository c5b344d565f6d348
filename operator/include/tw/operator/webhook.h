// Webhook: tw-operator's mutating admission webhook — the HTTPS endpoint (HttpsServer), the
// AdmissionReview handler (PodInjector) and its serving certificate.
//
// Paths: POST /mutate-pods (AdmissionReview v1, JSON) and GET /healthz. The certificate comes
// either from a folder of mounted files (tls.crt, tls.key: cert-manager's Secret), re-read
// every check interval and reloaded when it changed, or from WebhookCertSync (a Secret the
// operator creates and rotates, and the MutatingWebhookConfiguration's caBundle). The server
// starts once the first certificate is there; until then Serving() is false (the operator's
// /readyz says so, so no traffic is routed to a replica without a certificate).
//
// Threading: Start() and Stop() from one thread; Serving(), port() and RefreshCertificate()
// from any (RefreshCertificate is serialised internally). One background thread refreshes
// the certificate. Lifetime: Stop() (or the destructor) joins it and stops the server; the
// client and the warehouse source must outlive the object.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "tw/operator/https_server.h"
#include "tw/operator/pod_injector.h"
#include "tw/operator/webhook_cert_sync.h"

namespace tw::op {

inline constexpr char kMutatePodsPath[] = "/mutate-pods";

struct WebhookOptions {
  // The HTTPS endpoint; an empty address turns the webhook off.
  HttpsServerConfig server;
  // Operator-made certificates (used when cert_dir is empty).
  WebhookCertConfig certs;
  // A folder with tls.crt and tls.key kept current by someone else (cert-manager).
  std::string cert_dir;
  // How often the Secret or the files are looked at (with operator-made certificates at
  // most a sixth of their validity, so that rotation at two thirds is never late).
  std::chrono::milliseconds check_interval = std::chrono::minutes(1);

  bool enabled() const { return !server.address.empty(); }
  Status Validate() const;
};

class Webhook {
 public:
  using Clock = std::function<SystemTime()>;
  // REQUIRES: options.Validate() is OK.
  Webhook(
      KubeClient* client, const WarehouseSource* source, WebhookOptions options,
      Clock clock = [] { return std::chrono::system_clock::now(); });
  ~Webhook();

  void Start();
  void Stop();

  // The HTTPS server runs (it has a certificate).
  bool Serving() const { return port_.load() != 0; }
  // Its bound port, 0 while not serving.
  int port() const { return port_.load(); }
  // One certificate pass: read (create, rotate) the certificate, start the server or hand
  // it the new one, keep the caBundle.
  Status RefreshCertificate();

  // The request handler (public for tests).
  HttpReply Handle(const HttpRequest& request) const;

 private:
  StatusOr<ServingCert> CurrentCertificate();
  void Loop();

  const WebhookOptions options_;
  const Clock clock_;
  PodInjector injector_;
  WebhookCertSync sync_;
  std::mutex refresh_mu_;                // serialises RefreshCertificate
  std::unique_ptr<HttpsServer> server_;  // guarded by refresh_mu_
  std::string loaded_cert_;              // guarded by refresh_mu_: PEM the server presents
  std::string loaded_key_;               // guarded by refresh_mu_
  std::atomic<int> port_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace tw::op
