#include "tw/operator/webhook.h"

#include <fstream>
#include <sstream>

#include "tw/common/log.h"
#include "tw/common/metrics.h"
#include "tw/common/strings.h"

namespace tw::op {
namespace {

prometheus::Counter& Reviews(const std::string& result) {
  static auto& family = metrics::CounterFamily(
      "tokenwarehouse_operator_webhook_reviews_total",
      "AdmissionReviews answered by the pod webhook, by result: patched, unchanged (nothing to "
      "add, or not a labelled pod), warning (let through unchanged: unknown warehouse, no CSI "
      "driver), bad_request (not an AdmissionReview).");
  return family.Add({{"result", result}});
}

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(StrCat("cannot read ", path));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

Status WebhookOptions::Validate() const {
  if (!enabled()) return OkStatus();
  TW_RETURN_IF_ERROR(server.Validate());
  if (cert_dir.empty()) TW_RETURN_IF_ERROR(certs.Validate());
  if (check_interval.count() <= 0) return InvalidArgumentError("webhook check interval: > 0");
  return OkStatus();
}

Webhook::Webhook(KubeClient* client, const WarehouseSource* source, WebhookOptions options,
                 Clock clock)
    : options_(std::move(options)),
      clock_(std::move(clock)),
      injector_(source),
      sync_(client, options_.certs) {
  for (const char* r : {"patched", "unchanged", "warning", "bad_request"}) Reviews(r);
}

Webhook::~Webhook() { Stop(); }

void Webhook::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Webhook::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(refresh_mu_);
  server_.reset();
  port_ = 0;
}

StatusOr<ServingCert> Webhook::CurrentCertificate() {
  if (!options_.cert_dir.empty()) {
    ServingCert cert;
    TW_ASSIGN_OR_RETURN(cert.cert_pem, ReadFile(options_.cert_dir + "/tls.crt"));
    TW_ASSIGN_OR_RETURN(cert.key_pem, ReadFile(options_.cert_dir + "/tls.key"));
    return cert;
  }
  return sync_.Sync(clock_());
}

Status Webhook::RefreshCertificate() {
  std::lock_guard<std::mutex> lock(refresh_mu_);
  TW_ASSIGN_OR_RETURN(ServingCert cert, CurrentCertificate());
  if (server_ == nullptr) {
    auto handler = [this](const HttpRequest& r) { return Handle(r); };
    TW_ASSIGN_OR_RETURN(server_,
                        HttpsServer::Start(options_.server, handler, cert.cert_pem, cert.key_pem));
    port_ = server_->port();
    TW_LOG(kInfo, "webhook: serving",
           {{"address", options_.server.address}, {"port", server_->port()}});
  } else if (cert.cert_pem != loaded_cert_ || cert.key_pem != loaded_key_) {
    TW_RETURN_IF_ERROR(server_->SetCertificate(cert.cert_pem, cert.key_pem));
    TW_LOG(kInfo, "webhook: certificate reloaded");
  }
  loaded_cert_ = cert.cert_pem;
  loaded_key_ = cert.key_pem;
  if (options_.cert_dir.empty()) return sync_.EnsureCaBundle(cert.ca_pem);
  return OkStatus();
}

void Webhook::Loop() {
  auto interval = options_.check_interval;
  if (options_.cert_dir.empty()) {
    interval = std::min<std::chrono::milliseconds>(
        interval,
        std::chrono::duration_cast<std::chrono::milliseconds>(options_.certs.validity) / 6);
  }
  auto retry = std::chrono::milliseconds(500);
  for (;;) {
    Status s = RefreshCertificate();
    auto wait = interval;
    if (!s.ok()) {
      TW_LOG(kWarn, "webhook: certificate pass failed", {{"error", s}});
      wait = std::min(interval, retry);
      retry = std::min<std::chrono::milliseconds>(retry * 2, std::chrono::seconds(30));
    } else {
      retry = std::chrono::milliseconds(500);
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, wait, [this] { return stopping_; })) return;
  }
}

HttpReply Webhook::Handle(const HttpRequest& request) const {
  const std::string_view path = request.Path();
  if (path == "/healthz") {
    if (request.method != "GET") return {405, "text/plain", "GET only\n"};
    return {200, "text/plain", "ok\n"};
  }
  if (path != kMutatePodsPath) return {404, "text/plain", "not found\n"};
  if (request.method != "POST") return {405, "text/plain", "POST only\n"};
  std::string_view type = request.Header("content-type");
  if (!type.empty() && type.substr(0, type.find(';')) != "application/json") {
    Reviews("bad_request").Increment();
    return {415, "text/plain", "want Content-Type application/json\n"};
  }
  ReviewResult result = injector_.Review(request.body);
  if (result.http_status != 200) {
    Reviews("bad_request").Increment();
    TW_LOG(kInfo, "webhook: bad AdmissionReview", {{"error", result.body}});
    return {result.http_status, "text/plain", result.body};
  }
  Reviews(result.patched             ? "patched"
          : !result.warnings.empty() ? "warning"
                                     : "unchanged")
      .Increment();
  return {200, "application/json", result.body};
}

}  // namespace tw::op
