#include "tw/operator/informer.h"

#include <random>

#include "tw/common/log.h"
#include "tw/common/metrics.h"
#include "tw/common/strings.h"
#include "tw/operator/backoff.h"

namespace tw::op {

std::string_view ToString(EventType t) {
  switch (t) {
    case EventType::kAdded:
      return "added";
    case EventType::kModified:
      return "modified";
    case EventType::kDeleted:
      return "deleted";
  }
  return "unknown";
}

std::string Informer::Malformed(const Json& object) {
  if (!object.is_object()) return StrCat("not an object but ", object.type_name());
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return "no metadata object";
  auto name = meta->find("name");
  if (name == meta->end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
    return "metadata.name is not a non-empty string";
  }
  for (const char* field :
       {"namespace", "resourceVersion", "uid", "creationTimestamp", "deletionTimestamp"}) {
    auto f = meta->find(field);
    if (f != meta->end() && !f->is_string()) return StrCat("metadata.", field, " is not a string");
  }
  // Maps and lists every handler and the reconciler read: one bad value here would fail the
  // passes of every object that looks at this one (a pod is read for its TokenWarehouse).
  for (const char* field : {"labels", "annotations"}) {
    auto f = meta->find(field);
    if (f == meta->end() || f->is_null()) continue;
    if (!f->is_object()) return StrCat("metadata.", field, " is not an object");
    for (const auto& [k, v] : f->items()) {
      if (!v.is_string()) return StrCat("metadata.", field, ".", k, " is not a string");
    }
  }
  auto finalizers = meta->find("finalizers");
  if (finalizers != meta->end() && !finalizers->is_null()) {
    if (!finalizers->is_array()) return "metadata.finalizers is not an array";
    for (const auto& f : *finalizers) {
      if (!f.is_string()) return "metadata.finalizers has an item that is not a string";
    }
  }
  return "";
}

std::string Informer::KeyOf(const Json& object) {
  if (!Malformed(object).empty()) return "";
  const Json& meta = object["metadata"];
  std::string ns = meta.value("namespace", "");
  std::string name = meta.value("name", "");
  return ns.empty() ? name : StrCat(ns, "/", name);
}

void Informer::NoteMalformed(std::string_view where, std::string_view why) {
  ++malformed_objects_;
  static auto& family =
      metrics::CounterFamily("tokenwarehouse_operator_malformed_objects_total",
                             "Objects or watch events from the API server that were skipped "
                             "because a field had the wrong type.");
  family.Add({{"resource", config_.type.plural}}).Increment();
  TW_LOG(kWarn, "malformed object from the API server skipped",
         {{"resource", config_.type.plural}, {"where", where}, {"error", why}});
}

Informer::Informer(KubeClient* client, InformerConfig config, Handler handler)
    : client_(client), config_(std::move(config)), handler_(std::move(handler)) {}

Informer::~Informer() { Stop(); }

void Informer::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Informer::Stop() {
  stop_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

ObjectPtr Informer::Get(std::string_view ns, std::string_view name) const {
  std::string key = ns.empty() ? std::string(name) : StrCat(ns, "/", name);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(key);
  return it == cache_.end() ? nullptr : it->second;
}

std::vector<ObjectPtr> Informer::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ObjectPtr> out;
  out.reserve(cache_.size());
  for (const auto& [k, v] : cache_) out.push_back(v);
  return out;
}

size_t Informer::Size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_.size();
}

std::string Informer::resource_version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return resource_version_;
}

void Informer::Sleep(std::chrono::nanoseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_.load(); });
}

std::string Informer::SelectorQuery() const {
  if (config_.label_selector.empty()) return "";
  return StrCat("&labelSelector=", UrlEncode(config_.label_selector));
}

namespace {
void StripForCache(Json& object) {
  if (object.contains("metadata") && object["metadata"].is_object()) {
    object["metadata"].erase("managedFields");
  }
}
// REQUIRES: Informer::Malformed(object) is "".
std::string ResourceVersionOf(const Json& object) {
  return object["metadata"].value("resourceVersion", "");
}
}  // namespace

void Informer::Put(EventType type, Json object) {
  StripForCache(object);
  std::string key = KeyOf(object);
  std::string rv = ResourceVersionOf(object);
  auto ptr = std::make_shared<const Json>(std::move(object));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (type == EventType::kDeleted) {
      cache_.erase(key);
    } else {
      cache_[key] = ptr;
    }
    if (!rv.empty()) resource_version_ = rv;
  }
  try {
    handler_(type, ptr);
  } catch (const Json::exception& e) {
    NoteMalformed(StrCat("handler of ", key), e.what());
  }
}

StatusOr<int> Informer::ListAndReplace(const std::string& rv) {
  std::map<std::string, ObjectPtr, std::less<>> fresh;
  std::string list_rv;
  std::string cont;
  do {
    std::string path = StrCat(config_.type.CollectionPath(config_.ns),
                              "?resourceVersion=", UrlEncode(rv), SelectorQuery());
    if (config_.list_limit > 0) StrAppend(&path, "&limit=", config_.list_limit);
    if (!cont.empty()) StrAppend(&path, "&continue=", UrlEncode(cont));
    TW_ASSIGN_OR_RETURN(HttpResponse resp, client_->Do("GET", path));
    if (resp.status != 200) return resp.status;
    Json list;
    try {
      list = Json::parse(resp.body);
    } catch (const std::exception& e) {
      return InternalError(StrCat("list ", config_.type.plural, ": bad JSON: ", e.what()));
    }
    const Json* items = nullptr;
    try {
      const Json& meta = list.at("metadata");
      list_rv = meta.value("resourceVersion", "");
      cont = meta.value("continue", "");
      items = &list.at("items");
    } catch (const Json::exception& e) {
      NoteMalformed("list", e.what());
      return InternalError(StrCat("list ", config_.type.plural, ": malformed: ", e.what()));
    }
    if (!items->is_array()) {
      NoteMalformed("list", "items is not an array");
      return InternalError(StrCat("list ", config_.type.plural, ": items is not an array"));
    }
    for (Json item : *items) {
      if (std::string why = Malformed(item); !why.empty()) {
        NoteMalformed("list item", why);
        continue;
      }
      // Lists omit kind/apiVersion on items.
      item["kind"] = config_.type.kind;
      item["apiVersion"] = config_.type.ApiVersion();
      StripForCache(item);
      std::string key = KeyOf(item);
      fresh[key] = std::make_shared<const Json>(std::move(item));
    }
  } while (!cont.empty() && !stop_);

  std::vector<std::pair<EventType, ObjectPtr>> events;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, obj] : cache_) {
      if (!fresh.count(key)) events.emplace_back(EventType::kDeleted, obj);
    }
    for (const auto& [key, obj] : fresh) {
      auto it = cache_.find(key);
      if (it == cache_.end()) {
        events.emplace_back(EventType::kAdded, obj);
      } else if (ResourceVersionOf(*it->second) != ResourceVersionOf(*obj)) {
        events.emplace_back(EventType::kModified, obj);
      }
    }
    cache_ = std::move(fresh);
    resource_version_ = list_rv;
  }
  ++relists_;
  synced_ = true;
  for (const auto& [type, obj] : events) handler_(type, obj);
  return 200;
}

StatusOr<bool> Informer::WatchOnce() {
  static thread_local std::mt19937 rng{std::random_device{}()};
  int lo = static_cast<int>(config_.min_watch_timeout.count());
  int hi = std::max(lo, static_cast<int>(config_.max_watch_timeout.count()));
  int timeout = std::uniform_int_distribution<int>(lo, hi)(rng);
  std::string path =
      StrCat(config_.type.CollectionPath(config_.ns),
             "?watch=true&allowWatchBookmarks=true&resourceVersion=", UrlEncode(resource_version()),
             "&timeoutSeconds=", timeout, SelectorQuery());
  bool relist = false;
  Status event_error;
  std::string error_body;
  auto on_line = [&](std::string_view line) -> bool {
    if (StripWhitespace(line).empty()) return true;
    Json event;
    try {
      event = Json::parse(line);
    } catch (const std::exception& e) {
      event_error = InternalError(StrCat("watch ", config_.type.plural, ": bad event: ", e.what()));
      return false;
    }
    if (!event.is_object() || !event.contains("type") || !event["type"].is_string() ||
        !event.contains("object")) {
      NoteMalformed("watch event", "not an object with a string type and an object");
      return !stop_;
    }
    std::string type = event["type"];
    Json object = event["object"];
    if (type == "ADDED" || type == "MODIFIED" || type == "DELETED") {
      if (std::string why = Malformed(object); !why.empty()) {
        NoteMalformed(StrCat(type, " event"), why);
        return !stop_;
      }
    }
    if (type == "ADDED") {
      Put(EventType::kAdded, std::move(object));
    } else if (type == "MODIFIED") {
      Put(EventType::kModified, std::move(object));
    } else if (type == "DELETED") {
      Put(EventType::kDeleted, std::move(object));
    } else if (type == "BOOKMARK") {
      // A bookmark carries only metadata.resourceVersion.
      std::string rv;
      if (object.is_object() && object.contains("metadata") && object["metadata"].is_object()) {
        const Json& meta = object["metadata"];
        if (meta.contains("resourceVersion") && meta["resourceVersion"].is_string()) {
          rv = meta["resourceVersion"].get<std::string>();
        }
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (!rv.empty()) resource_version_ = rv;
    } else if (type == "ERROR") {
      int code = 0;
      if (object.is_object() && object.contains("code") && object["code"].is_number_integer()) {
        code = object["code"].get<int>();
      }
      if (code == 410) {
        relist = true;
      } else {
        event_error = ApiError(code, object.dump());
      }
      return false;
    }
    return !stop_;
  };
  TW_ASSIGN_OR_RETURN(
      int status, client_->Stream(path, on_line, std::chrono::seconds(timeout + 30), &error_body));
  if (status == 410) return true;
  if (status != 200) return ApiError(status, error_body);
  if (!event_error.ok()) return event_error;
  return relist;
}

void Informer::Run() {
  Backoff backoff(config_.backoff_initial, config_.backoff_max);
  std::string list_rv = "0";
  bool need_list = true;
  while (!stop_) {
    if (need_list) {
      auto listed = ListAndReplace(list_rv);
      if (stop_ || (!listed.ok() && listed.status().code() == StatusCode::kCancelled)) break;
      if (!listed.ok() || *listed != 200) {
        if (listed.ok() && *listed == 410) {
          list_rv = "";  // the version is gone: consistent read
          continue;
        }
        TW_LOG(kWarn, "list failed",
               {{"resource", config_.type.plural},
                {"error", listed.ok() ? StrCat("HTTP ", *listed) : listed.status().ToString()}});
        Sleep(backoff.Next());
        continue;
      }
      need_list = false;
      backoff.Reset();
    }
    auto started = std::chrono::steady_clock::now();
    auto watched = WatchOnce();
    if (stop_ || (!watched.ok() && watched.status().code() == StatusCode::kCancelled)) break;
    if (!watched.ok()) {
      ++watch_errors_;
      TW_LOG(kWarn, "watch failed",
             {{"resource", config_.type.plural}, {"error", watched.status()}});
      Sleep(backoff.Next());
      continue;
    }
    if (*watched) {
      ++watch_errors_;
      TW_LOG(kInfo, "watch expired (410), relisting", {{"resource", config_.type.plural}});
      need_list = true;
      list_rv = resource_version();
      continue;
    }
    // A watch the server ends at once (not by its timeout) must not become a busy loop.
    if (std::chrono::steady_clock::now() - started < std::chrono::seconds(1)) {
      Sleep(backoff.Next());
    } else {
      backoff.Reset();
    }
  }
}

}  // namespace tw::op
