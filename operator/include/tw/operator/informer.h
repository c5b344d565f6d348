// Informer: a local cache of one resource type, kept current by list+watch, as client-go's
// reflector and informer do it.
//
// - Lists first with resourceVersion "0" (served from the watch cache), then watches from
//   the list's resourceVersion with allowWatchBookmarks and a timeoutSeconds drawn at random
//   from [min_watch_timeout, max_watch_timeout]. A BOOKMARK only advances the version.
// - 410 Gone, as an HTTP status or as an ERROR event, relists: first from the last known
//   version, then, if that is gone too, with resourceVersion "" (a consistent read), and the
//   cache is replaced (objects missing from the new list are reported as deleted).
// - 429, 5xx and transport errors back off exponentially (with jitter) and retry; a watch
//   that ends normally is re-opened at once from the last version.
// - managedFields are dropped from cached objects (they are large and never read here).
// - A malformed object (not a JSON object; metadata without a string name; a namespace,
//   resourceVersion, uid or timestamp that is not a string; labels or annotations that are not
//   maps of strings; finalizers that are not a list of strings) is logged, counted
//   (malformed_objects() and
//   tokenwarehouse_operator_malformed_objects_total) and skipped; so is one the handler throws
//   a JSON type error on. It never stops the informer.
//
// Threading: one thread per informer runs the loop and calls the handler (which must be
// quick: the operator's only enqueues keys). Get/List/HasSynced may be called from any
// thread. Lifetime: Stop() needs the KubeClient shut down (or a watch timeout) to interrupt
// a watch in progress; the KubeClient must outlive the informer.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tw/operator/kube_client.h"

namespace tw::op {

enum class EventType {
  kAdded,     // the object appeared (watch ADDED, or new in a relist)
  kModified,  // the object changed
  kDeleted,   // the object is gone (watch DELETED, or missing from a relist)
};
std::string_view ToString(EventType t);

struct InformerConfig {
  ResourceType type;
  // Namespace to watch; "" = all namespaces.
  std::string ns;
  // Label selector ("" = everything).
  std::string label_selector;
  // Each watch asks the server to end it after a random time in this range.
  std::chrono::seconds min_watch_timeout{300};
  std::chrono::seconds max_watch_timeout{600};
  // Retry delays after errors.
  std::chrono::nanoseconds backoff_initial = std::chrono::milliseconds(200);
  std::chrono::nanoseconds backoff_max = std::chrono::seconds(30);
  // Page size of lists (0 = no paging).
  int list_limit = 500;
};

using ObjectPtr = std::shared_ptr<const Json>;

class Informer {
 public:
  using Handler = std::function<void(EventType, const ObjectPtr&)>;
  Informer(KubeClient* client, InformerConfig config, Handler handler);
  ~Informer();

  void Start();
  void Stop();

  // True once the first list has been delivered.
  bool HasSynced() const { return synced_.load(); }
  // Cached object, or nullptr.
  ObjectPtr Get(std::string_view ns, std::string_view name) const;
  // Every cached object (a snapshot).
  std::vector<ObjectPtr> List() const;
  size_t Size() const;

  // For tests and metrics.
  uint64_t relists() const { return relists_.load(); }
  uint64_t watch_errors() const { return watch_errors_.load(); }
  uint64_t malformed_objects() const { return malformed_objects_.load(); }
  std::string resource_version() const;

  // "namespace/name" of an object (or "name" for cluster-scoped ones); "" for a malformed one.
  static std::string KeyOf(const Json& object);
  // Why `object` cannot be cached (see the top of this file), or "" when it can.
  static std::string Malformed(const Json& object);

 private:
  void Run();
  // Lists with `rv`; returns the HTTP status (200 on success) or an error.
  StatusOr<int> ListAndReplace(const std::string& rv);
  // Watches from resource_version_ until the stream ends. Returns true when a relist is
  // needed (410), false to re-watch; errors back off.
  StatusOr<bool> WatchOnce();
  void Put(EventType type, Json object);
  // Logs and counts a malformed object or event.
  void NoteMalformed(std::string_view where, std::string_view why);
  void Sleep(std::chrono::nanoseconds d);
  std::string SelectorQuery() const;

  KubeClient* client_;
  InformerConfig config_;
  Handler handler_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> synced_{false};
  std::atomic<uint64_t> relists_{0};
  std::atomic<uint64_t> watch_errors_{0};
  std::atomic<uint64_t> malformed_objects_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, ObjectPtr, std::less<>> cache_;  // guarded by mu_
  std::string resource_version_;                         // guarded by mu_
};

}  // namespace tw::op
