// The cpprestsdk edge: nothing of cpprestsdk is visible outside this file.
#define _TURN_OFF_PLATFORM_STRING
#include "tw/operator/kube_client.h"

#include <cpprest/containerstream.h>
#include <cpprest/http_client.h>

#include <atomic>
#include <boost/asio/ssl.hpp>
#include <fstream>
#include <mutex>
#include <sstream>

#include "tw/common/strings.h"

namespace tw::op {

namespace kinds {
const ResourceType kTokenWarehouse{"tokenwarehouse.io", "v1alpha1", "tokenwarehouses",
                                   "TokenWarehouse", true};
const ResourceType kConfigMap{"", "v1", "configmaps", "ConfigMap", true};
const ResourceType kDaemonSet{"apps", "v1", "daemonsets", "DaemonSet", true};
const ResourceType kService{"", "v1", "services", "Service", true};
const ResourceType kPod{"", "v1", "pods", "Pod", true};
const ResourceType kLease{"coordination.k8s.io", "v1", "leases", "Lease", true};
const ResourceType kServiceMonitor{"monitoring.coreos.com", "v1", "servicemonitors",
                                   "ServiceMonitor", true};
}  // namespace kinds

std::string ResourceType::ApiVersion() const {
  return group.empty() ? version : StrCat(group, "/", version);
}

std::string ResourceType::CollectionPath(std::string_view ns) const {
  std::string path =
      group.empty() ? StrCat("/api/", version) : StrCat("/apis/", group, "/", version);
  if (namespaced && !ns.empty()) StrAppend(&path, "/namespaces/", ns);
  StrAppend(&path, "/", plural);
  return path;
}

std::string ResourceType::ObjectPath(std::string_view ns, std::string_view name) const {
  return StrCat(CollectionPath(ns), "/", name);
}

std::string UrlEncode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

Status ApiError(int http_status, std::string_view body) {
  std::string message;
  std::string reason;
  try {
    Json j = Json::parse(body);
    if (j.is_object()) {
      message = j.value("message", "");
      reason = j.value("reason", "");
    }
  } catch (const std::exception&) {
  }
  if (message.empty()) message = std::string(body.substr(0, 512));
  std::string text = StrCat("HTTP ", http_status, ": ", message);
  switch (http_status) {
    case 400:
    case 422:
      return InvalidArgumentError(text);
    case 401:
    case 403:
      return PermissionDeniedError(text);
    case 404:
      return NotFoundError(text);
    case 409:
      return reason == "AlreadyExists" ? AlreadyExistsError(text) : FailedPreconditionError(text);
    case 410:
      return FailedPreconditionError(text);
    default:
      if (http_status == 429 || http_status >= 500) return UnavailableError(text);
      return InternalError(text);
  }
}

bool IsConflict(const Status& s) {
  return s.code() == StatusCode::kFailedPrecondition &&
         s.message().find("HTTP 409:") != std::string_view::npos;
}

struct KubeClient::Impl {
  KubeConfig config;
  std::unique_ptr<web::http::client::http_client> client;
  std::mutex mu;
  pplx::cancellation_token_source cancel;  // guarded by mu (replaced never; cancelled once)
  std::atomic<bool> shut_down{false};
  std::string token;                                    // guarded by mu
  std::chrono::steady_clock::time_point token_read_at;  // guarded by mu

  web::http::client::http_client_config MakeConfig(std::chrono::seconds timeout) const {
    web::http::client::http_client_config cfg;
    cfg.set_timeout(timeout);
    if (config.insecure_skip_tls_verify) cfg.set_validate_certificates(false);
    std::string ca = config.ca_pem, cert = config.client_cert_pem, key = config.client_key_pem;
    if (!ca.empty() || !cert.empty()) {
      cfg.set_ssl_context_callback([ca, cert, key](boost::asio::ssl::context& ctx) {
        boost::system::error_code ec;
        if (!ca.empty()) ctx.add_certificate_authority(boost::asio::buffer(ca), ec);
        if (!cert.empty()) ctx.use_certificate_chain(boost::asio::buffer(cert), ec);
        if (!key.empty()) {
          ctx.use_private_key(boost::asio::buffer(key), boost::asio::ssl::context::pem, ec);
        }
      });
    }
    return cfg;
  }

  std::string BearerToken() {
    std::lock_guard<std::mutex> lock(mu);
    auto now = std::chrono::steady_clock::now();
    if (!config.token_file.empty() &&
        (token.empty() || now - token_read_at > std::chrono::minutes(1))) {
      std::ifstream in(config.token_file);
      if (in) {
        std::ostringstream s;
        s << in.rdbuf();
        token = std::string(StripWhitespace(s.str()));
        token_read_at = now;
      }
    }
    if (token.empty()) token = config.token;
    return token;
  }

  web::http::http_request MakeRequest(std::string_view method, const std::string& path) {
    web::http::http_request req{web::http::method(std::string(method))};
    req.set_request_uri(web::uri(path));
    req.headers().add("Accept", "application/json");
    req.headers().add("User-Agent", config.user_agent);
    std::string t = BearerToken();
    if (!t.empty()) req.headers().add("Authorization", "Bearer " + t);
    return req;
  }

  pplx::cancellation_token Token() {
    std::lock_guard<std::mutex> lock(mu);
    return cancel.get_token();
  }
};

KubeClient::KubeClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

KubeClient::~KubeClient() { Shutdown(); }

StatusOr<std::unique_ptr<KubeClient>> KubeClient::Create(KubeConfig config) {
  if (config.server.empty()) return InvalidArgumentError("kube client: no server");
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  impl->token = impl->config.token;
  try {
    impl->client = std::make_unique<web::http::client::http_client>(
        web::uri(impl->config.server), impl->MakeConfig(std::chrono::seconds(30)));
  } catch (const std::exception& e) {
    return InvalidArgumentError(StrCat("kube client: ", impl->config.server, ": ", e.what()));
  }
  return std::unique_ptr<KubeClient>(new KubeClient(std::move(impl)));
}

void KubeClient::Shutdown() {
  if (impl_->shut_down.exchange(true)) return;
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->cancel.cancel();
}

bool KubeClient::shut_down() const { return impl_->shut_down.load(); }

StatusOr<HttpResponse> KubeClient::Do(std::string_view method, const std::string& path_and_query,
                                      const std::string& body, std::string_view content_type) {
  if (shut_down()) return CancelledError("kube client shut down");
  try {
    auto req = impl_->MakeRequest(method, path_and_query);
    if (!body.empty()) req.set_body(body, std::string(content_type));
    web::http::http_response resp = impl_->client->request(req, impl_->Token()).get();
    HttpResponse out;
    out.status = resp.status_code();
    out.body = resp.extract_utf8string(true).get();
    return out;
  } catch (const pplx::task_canceled&) {
    return CancelledError(StrCat(method, " ", path_and_query, ": cancelled"));
  } catch (const std::exception& e) {
    if (shut_down()) return CancelledError(StrCat(method, " ", path_and_query, ": cancelled"));
    return UnavailableError(StrCat(method, " ", path_and_query, ": ", e.what()));
  }
}

StatusOr<int> KubeClient::Stream(const std::string& path_and_query,
                                 const std::function<bool(std::string_view line)>& on_line,
                                 std::chrono::seconds idle_timeout, std::string* error_body) {
  if (shut_down()) return CancelledError("kube client shut down");
  try {
    web::http::client::http_client client(web::uri(impl_->config.server),
                                          impl_->MakeConfig(idle_timeout));
    auto req = impl_->MakeRequest("GET", path_and_query);
    web::http::http_response resp = client.request(req, impl_->Token()).get();
    int status = resp.status_code();
    if (status != 200) {
      if (error_body != nullptr) *error_body = resp.extract_utf8string(true).get();
      return status;
    }
    auto body = resp.body();
    while (!shut_down()) {
      Concurrency::streams::container_buffer<std::string> line;
      size_t n = body.read_line(line).get();
      const std::string& text = line.collection();
      if (n == 0 && text.empty()) {
        if (body.is_eof()) break;
        continue;
      }
      if (!on_line(text)) break;
    }
    return status;
  } catch (const pplx::task_canceled&) {
    return CancelledError(StrCat("watch ", path_and_query, ": cancelled"));
  } catch (const std::exception& e) {
    if (shut_down()) return CancelledError(StrCat("watch ", path_and_query, ": cancelled"));
    return UnavailableError(StrCat("watch ", path_and_query, ": ", e.what()));
  }
}

StatusOr<Json> KubeClient::JsonCall(std::string_view method, const std::string& path,
                                    const std::string& body, std::string_view content_type) {
  TW_ASSIGN_OR_RETURN(HttpResponse resp, Do(method, path, body, content_type));
  if (resp.status < 200 || resp.status >= 300) {
    return ApiError(resp.status, resp.body).WithPrefix(StrCat(method, " ", path));
  }
  try {
    if (resp.body.empty()) return Json::object();
    return Json::parse(resp.body);
  } catch (const std::exception& e) {
    return InternalError(StrCat(method, " ", path, ": bad JSON: ", e.what()));
  }
}

StatusOr<Json> KubeClient::Get(const ResourceType& type, std::string_view ns,
                               std::string_view name) {
  return JsonCall("GET", type.ObjectPath(ns, name), "", "");
}

StatusOr<Json> KubeClient::Create(const ResourceType& type, std::string_view ns,
                                  const Json& object) {
  return JsonCall("POST", type.CollectionPath(ns), object.dump(), "application/json");
}

StatusOr<Json> KubeClient::Update(const ResourceType& type, std::string_view ns,
                                  std::string_view name, const Json& object) {
  return JsonCall("PUT", type.ObjectPath(ns, name), object.dump(), "application/json");
}

StatusOr<Json> KubeClient::UpdateStatus(const ResourceType& type, std::string_view ns,
                                        std::string_view name, const Json& object) {
  return JsonCall("PUT", type.ObjectPath(ns, name) + "/status", object.dump(), "application/json");
}

StatusOr<Json> KubeClient::Apply(const ResourceType& type, std::string_view ns,
                                 std::string_view name, const Json& object,
                                 std::string_view field_manager, bool force) {
  std::string path = StrCat(type.ObjectPath(ns, name), "?fieldManager=", UrlEncode(field_manager),
                            "&force=", force ? "true" : "false");
  return JsonCall("PATCH", path, object.dump(), "application/apply-patch+yaml");
}

StatusOr<Json> KubeClient::MergePatch(const ResourceType& type, std::string_view ns,
                                      std::string_view name, const Json& patch) {
  return JsonCall("PATCH", type.ObjectPath(ns, name), patch.dump(), "application/merge-patch+json");
}

Status KubeClient::Delete(const ResourceType& type, std::string_view ns, std::string_view name,
                          std::string_view propagation) {
  Json body = {{"kind", "DeleteOptions"},
               {"apiVersion", "v1"},
               {"propagationPolicy", std::string(propagation)}};
  auto result = JsonCall("DELETE", type.ObjectPath(ns, name), body.dump(), "application/json");
  return result.status();
}

int64_t JsonInt(const Json& object, std::string_view key, int64_t fallback) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  if (it == object.end()) return fallback;
  if (it->is_number_unsigned()) {
    uint64_t v = it->get<uint64_t>();
    return v <= static_cast<uint64_t>(INT64_MAX) ? static_cast<int64_t>(v) : fallback;
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  return fallback;
}

}  // namespace tw::op
