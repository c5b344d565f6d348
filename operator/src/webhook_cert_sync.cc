#include "tw/operator/webhook_cert_sync.h"

#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/operator/render.h"

namespace tw::op {

namespace kinds {
const ResourceType kSecret{"", "v1", "secrets", "Secret", true};
const ResourceType kMutatingWebhookConfiguration{"admissionregistration.k8s.io", "v1",
                                                 "mutatingwebhookconfigurations",
                                                 "MutatingWebhookConfiguration", false};
}  // namespace kinds

Status WebhookCertConfig::Validate() const {
  if (secret_namespace.empty()) return InvalidArgumentError("webhook: no Secret namespace");
  if (secret_name.empty()) return InvalidArgumentError("webhook: no Secret name");
  if (hosts.empty()) return InvalidArgumentError("webhook: no certificate host names");
  if (validity < std::chrono::minutes(1)) {
    return InvalidArgumentError("webhook certificate validity: at least 1m");
  }
  return OkStatus();
}

WebhookCertSync::WebhookCertSync(KubeClient* client, WebhookCertConfig config)
    : client_(client), config_(std::move(config)) {}

StatusOr<ServingCert> WebhookCertSync::Sync(SystemTime now) {
  const std::string where = StrCat("Secret ", config_.secret_namespace, "/", config_.secret_name);
  auto secret = client_->Get(kinds::kSecret, config_.secret_namespace, config_.secret_name);
  bool exists = secret.ok();
  if (!exists && secret.status().code() != StatusCode::kNotFound) return secret.status();
  ServingCert current;
  std::string reason = "no Secret yet";
  if (exists) {
    const Json& data = secret->value("data", Json::object());
    auto field = [&](const char* key) -> std::string {
      auto v = data.find(key);
      if (v == data.end() || !v->is_string()) return "";
      auto decoded = Base64Decode(v->get<std::string>(), key);
      return decoded.ok() ? *decoded : "";
    };
    current = {field("ca.crt"), field("tls.crt"), field("tls.key")};
    reason = RotationReason(current, config_.hosts, now);
  }
  if (reason.empty()) return current;

  TW_ASSIGN_OR_RETURN(ServingCert fresh, GenerateServingCert(config_.hosts, now, config_.validity));
  // The previous CA stays trusted until it expires: replicas still serving the previous
  // certificate keep working while they switch.
  fresh.ca_pem += KeepUnexpired(current.ca_pem, now);
  Json object = {{"apiVersion", "v1"},
                 {"kind", "Secret"},
                 {"type", "kubernetes.io/tls"},
                 {"metadata",
                  {{"name", config_.secret_name},
                   {"namespace", config_.secret_namespace},
                   {"labels", {{kLabelManagedBy, kManagedByValue}}}}},
                 {"data",
                  {{"ca.crt", Base64Encode(fresh.ca_pem)},
                   {"tls.crt", Base64Encode(fresh.cert_pem)},
                   {"tls.key", Base64Encode(fresh.key_pem)}}}};
  if (exists) {
    object["metadata"]["resourceVersion"] = (*secret)["metadata"].value("resourceVersion", "");
    TW_RETURN_IF_ERROR(
        client_->Update(kinds::kSecret, config_.secret_namespace, config_.secret_name, object)
            .status()
            .WithPrefix(StrCat("replacing ", where)));
  } else {
    TW_RETURN_IF_ERROR(client_->Create(kinds::kSecret, config_.secret_namespace, object)
                           .status()
                           .WithPrefix(StrCat("creating ", where)));
  }
  auto info = InspectCert(fresh.cert_pem);
  TW_LOG(kInfo, "webhook: new serving certificate",
         {{"secret", where},
          {"reason", reason},
          {"not_after", info.ok() ? std::chrono::system_clock::to_time_t(info->not_after) : 0}});
  return fresh;
}

Status WebhookCertSync::EnsureCaBundle(const std::string& ca_bundle_pem) {
  if (config_.webhook_config_name.empty()) return OkStatus();
  TW_ASSIGN_OR_RETURN(Json mwc, client_->Get(kinds::kMutatingWebhookConfiguration, "",
                                             config_.webhook_config_name));
  const std::string want = Base64Encode(ca_bundle_pem);
  Json patch = Json::array();
  patch.push_back({{"op", "test"},
                   {"path", "/metadata/resourceVersion"},
                   {"value", mwc["metadata"].value("resourceVersion", "")}});
  const Json& hooks = mwc.value("webhooks", Json::array());
  for (size_t i = 0; i < hooks.size(); ++i) {
    const Json& cc = hooks[i].value("clientConfig", Json::object());
    if (cc.value("caBundle", "") == want) continue;
    patch.push_back({{"op", cc.contains("caBundle") ? "replace" : "add"},
                     {"path", StrCat("/webhooks/", i, "/clientConfig/caBundle")},
                     {"value", want}});
  }
  if (patch.size() == 1) return OkStatus();
  const std::string path =
      kinds::kMutatingWebhookConfiguration.ObjectPath("", config_.webhook_config_name);
  TW_ASSIGN_OR_RETURN(HttpResponse resp,
                      client_->Do("PATCH", path, patch.dump(), "application/json-patch+json"));
  if (resp.status < 200 || resp.status >= 300) {
    return ApiError(resp.status, resp.body).WithPrefix(StrCat("PATCH ", path));
  }
  TW_LOG(kInfo, "webhook: caBundle updated",
         {{"mutatingwebhookconfiguration", config_.webhook_config_name},
          {"webhooks", patch.size() - 1}});
  return OkStatus();
}

}  // namespace tw::op
