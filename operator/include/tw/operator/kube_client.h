// KubeClient: the small slice of the Kubernetes REST API that tw-operator uses, over
// cpprestsdk (HTTP/1.1, TLS, chunked watch streams).
//
// Objects are nlohmann::json values; cpprestsdk types never leave kube_client.cc (its
// exceptions are caught there and become Status). HTTP errors of the typed helpers map to
// codes by ApiError(): 404 → kNotFound, 409 → kFailedPrecondition (conflict) or
// kAlreadyExists, 410 → kFailedPrecondition, 429/5xx → kUnavailable, 400/422 →
// kInvalidArgument, 401/403 → kPermissionDenied; the message starts "HTTP <code>".
//
// Threading: every method may be called from any thread concurrently. Lifetime: Shutdown()
// (or the destructor) cancels streams in progress; the client must outlive its callers.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "nlohmann/json.hpp"
#include "tw/common/status.h"
#include "tw/operator/kube_config.h"

namespace tw::op {

using Json = nlohmann::json;

// The integer field `key` of `object`, or `fallback` when the object lacks it or holds
// something that is not an integer of int64 range (a float, 3.9e44, a string): values from
// the API server are outside input, and converting such a number to an integer is undefined.
int64_t JsonInt(const Json& object, std::string_view key, int64_t fallback);

// Where one resource type's objects live in the REST tree.
struct ResourceType {
  std::string group;    // "" for the core group
  std::string version;  // "v1", "v1alpha1"
  std::string plural;   // "configmaps"
  std::string kind;     // "ConfigMap"
  bool namespaced = true;

  // "v1" or "apps/v1".
  std::string ApiVersion() const;
  // ".../namespaces/<ns>/<plural>"; `ns` empty (or a cluster-scoped type) → all namespaces.
  std::string CollectionPath(std::string_view ns) const;
  std::string ObjectPath(std::string_view ns, std::string_view name) const;
};

namespace kinds {
extern const ResourceType kTokenWarehouse;
extern const ResourceType kConfigMap;
extern const ResourceType kDaemonSet;
extern const ResourceType kService;
extern const ResourceType kPod;
extern const ResourceType kLease;
extern const ResourceType kServiceMonitor;
}  // namespace kinds

struct HttpResponse {
  int status = 0;
  std::string body;
};

// The Status for a non-2xx HTTP answer; the message carries the API Status's message.
Status ApiError(int http_status, std::string_view body);
// A 409 Conflict on a stale resourceVersion (not AlreadyExists).
bool IsConflict(const Status& s);
// Percent-encodes a query value.
std::string UrlEncode(std::string_view s);

class KubeClient {
 public:
  static StatusOr<std::unique_ptr<KubeClient>> Create(KubeConfig config);
  ~KubeClient();
  KubeClient(const KubeClient&) = delete;
  KubeClient& operator=(const KubeClient&) = delete;

  // One request. Any HTTP status is a result; transport failures are kUnavailable.
  StatusOr<HttpResponse> Do(std::string_view method, const std::string& path_and_query,
                            const std::string& body = "",
                            std::string_view content_type = "application/json");

  // Opens a streaming GET and calls `on_line` for each newline-terminated line until the
  // server ends the stream, `on_line` returns false, or Shutdown(). Returns the HTTP status;
  // for a non-200 status the body is stored in `*error_body` and no line is delivered.
  StatusOr<int> Stream(const std::string& path_and_query,
                       const std::function<bool(std::string_view line)>& on_line,
                       std::chrono::seconds idle_timeout, std::string* error_body);

  // Cancels every request and stream in progress; later calls fail with kCancelled.
  void Shutdown();
  bool shut_down() const;

  // Typed helpers. `ns` is ignored for cluster-scoped types.
  StatusOr<Json> Get(const ResourceType& type, std::string_view ns, std::string_view name);
  StatusOr<Json> Create(const ResourceType& type, std::string_view ns, const Json& object);
  // PUT; `object` carries metadata.resourceVersion for optimistic locking.
  StatusOr<Json> Update(const ResourceType& type, std::string_view ns, std::string_view name,
                        const Json& object);
  // PUT to the status subresource.
  StatusOr<Json> UpdateStatus(const ResourceType& type, std::string_view ns, std::string_view name,
                              const Json& object);
  // Server-side apply (application/apply-patch+yaml with a JSON body).
  StatusOr<Json> Apply(const ResourceType& type, std::string_view ns, std::string_view name,
                       const Json& object, std::string_view field_manager, bool force);
  // JSON merge patch (RFC 7386).
  StatusOr<Json> MergePatch(const ResourceType& type, std::string_view ns, std::string_view name,
                            const Json& patch);
  // DELETE with a propagation policy ("Background", "Foreground", "Orphan").
  Status Delete(const ResourceType& type, std::string_view ns, std::string_view name,
                std::string_view propagation = "Background");

 private:
  struct Impl;
  explicit KubeClient(std::unique_ptr<Impl> impl);
  StatusOr<Json> JsonCall(std::string_view method, const std::string& path, const std::string& body,
                          std::string_view content_type);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tw::op
