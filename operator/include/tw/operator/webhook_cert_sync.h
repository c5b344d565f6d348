// WebhookCertSync: keeps the admission webhook's serving certificate in a Secret and its CA in
// the MutatingWebhookConfiguration's caBundle, for the mode in which tw-operator makes its own
// certificates (no cert-manager).
//
// Sync() is one level-triggered pass: read the Secret (type kubernetes.io/tls: tls.crt,
// tls.key, ca.crt); create it, or replace it (optimistic locking on resourceVersion) when
// RotationReason() says so — a new CA and serving certificate, with ca.crt holding the new CA
// followed by the previous CAs that have not expired. Every replica runs it: the Secret is the
// one source of truth, a replica that loses the race gets a conflict and reads the winner's
// next time. EnsureCaBundle() then makes every webhook of the configuration trust ca.crt (a
// JSON patch guarded by a "test" of the resourceVersion).
//
// Threading: one caller at a time (the webhook's certificate thread). The client must outlive
// the object.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "tw/operator/kube_client.h"
#include "tw/operator/webhook_certs.h"

namespace tw::op {

namespace kinds {
extern const ResourceType kSecret;
extern const ResourceType kMutatingWebhookConfiguration;
}  // namespace kinds

struct WebhookCertConfig {
  std::string secret_namespace;
  std::string secret_name;
  // The MutatingWebhookConfiguration whose caBundle is kept ("" = none).
  std::string webhook_config_name;
  // DNS names and IP addresses the certificate names (the Service's DNS names).
  std::vector<std::string> hosts;
  // Lifetime of each CA and serving certificate; replaced after two thirds of it.
  std::chrono::seconds validity = std::chrono::hours(24 * 365);

  Status Validate() const;
};

class WebhookCertSync {
 public:
  // REQUIRES: config.Validate() is OK; `client` outlives this object.
  WebhookCertSync(KubeClient* client, WebhookCertConfig config);

  // The serving certificate to use at `now`, creating or rotating the Secret as needed.
  StatusOr<ServingCert> Sync(SystemTime now);

  // Makes every webhook of the configuration trust `ca_bundle_pem`. NotFound when the
  // configuration does not exist.
  Status EnsureCaBundle(const std::string& ca_bundle_pem);

  const WebhookCertConfig& config() const { return config_; }

 private:
  KubeClient* client_;
  WebhookCertConfig config_;
};

}  // namespace tw::op
