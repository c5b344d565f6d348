#include "tw/operator/leader_election.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <random>

#include "tw/common/log.h"
#include "tw/common/strings.h"
#include "tw/operator/backoff.h"
#include "tw/operator/kube_client.h"
#include "tw/operator/status.h"

namespace tw::op {
namespace {

using nlohmann::json;

std::string MicroTimeNow() {
  auto now = std::chrono::system_clock::now();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  std::time_t t = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char frac[16];
  std::snprintf(frac, sizeof frac, ".%06lldZ", static_cast<long long>(us % 1000000));
  return std::string(buf) + frac;
}

int64_t Seconds(std::chrono::milliseconds d) {
  return std::max<int64_t>(1, (d.count() + 999) / 1000);
}

}  // namespace

std::string DefaultIdentity() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "unknown");
  std::random_device rd;
  std::mt19937_64 rng(rd() ^ (static_cast<uint64_t>(getpid()) << 32));
  static const char kHex[] = "0123456789abcdef";
  std::string uuid;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) uuid.push_back('-');
    int v = static_cast<int>(rng() & 15);
    if (i == 12) v = 4;
    if (i == 16) v = 8 | (v & 3);
    uuid.push_back(kHex[v]);
  }
  return StrCat(host, "_", uuid);
}

LeaderElector::LeaderElector(KubeClient* client, LeaderElectionConfig config,
                             std::function<void()> on_started_leading,
                             std::function<void()> on_stopped_leading)
    : client_(client),
      config_(std::move(config)),
      on_started_(std::move(on_started_leading)),
      on_stopped_(std::move(on_stopped_leading)) {
  if (config_.identity.empty()) config_.identity = DefaultIdentity();
}

LeaderElector::~LeaderElector() { Stop(); }

void LeaderElector::Start() {
  thread_ = std::thread([this] { Run(); });
}

void LeaderElector::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_.exchange(true) && !thread_.joinable()) return;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeaderElector::Sleep(std::chrono::nanoseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_.load(); });
}

bool LeaderElector::TryAcquireOrRenew() {
  const ResourceType& type = kinds::kLease;
  std::string now = MicroTimeNow();
  auto steady_now = std::chrono::steady_clock::now();
  json spec = {{"holderIdentity", config_.identity},
               {"leaseDurationSeconds", Seconds(config_.lease_duration)},
               {"acquireTime", now},
               {"renewTime", now},
               {"leaseTransitions", 0}};
  auto current = client_->Get(type, config_.lease_namespace, config_.lease_name);
  if (!current.ok()) {
    if (current.status().code() != StatusCode::kNotFound) return Failed(current.status(), "get");
    json lease = {
        {"apiVersion", "coordination.k8s.io/v1"},
        {"kind", "Lease"},
        {"metadata", {{"name", config_.lease_name}, {"namespace", config_.lease_namespace}}},
        {"spec", spec}};
    auto created = client_->Create(type, config_.lease_namespace, lease);
    if (!created.ok()) return Failed(created.status(), "create");
    last_error_.clear();
    observed_record_ = (*created)["spec"].dump();
    observed_at_ = steady_now;
    return true;
  }
  json lease = std::move(*current);
  json old = lease.value("spec", json::object());
  std::string holder = old.value("holderIdentity", "");
  std::string record = old.dump();
  if (record != observed_record_) {
    observed_record_ = record;
    observed_at_ = steady_now;
  }
  // Bounded: a hostile or corrupt Lease must not overflow the clock arithmetic below.
  int64_t duration_s = std::clamp<int64_t>(
      JsonInt(old, "leaseDurationSeconds", Seconds(config_.lease_duration)), 0, 86400);
  bool expired = steady_now > observed_at_ + std::chrono::seconds(duration_s);
  bool ours = holder == config_.identity;
  if (!holder.empty() && !ours && !expired) return false;
  int64_t transitions = std::clamp<int64_t>(JsonInt(old, "leaseTransitions", 0), 0, INT32_MAX);
  if (ours) {
    spec["acquireTime"] = old.value("acquireTime", now);
    spec["leaseTransitions"] = transitions;
  } else {
    spec["leaseTransitions"] = transitions + 1;
  }
  lease["spec"] = spec;
  auto updated = client_->Update(type, config_.lease_namespace, config_.lease_name, lease);
  if (!updated.ok()) return Failed(updated.status(), "update");  // 409: lost the race
  last_error_.clear();
  observed_record_ = (*updated)["spec"].dump();
  observed_at_ = steady_now;
  return true;
}

bool LeaderElector::Failed(const Status& status, const char* request) {
  if (IsConflict(status) || status.code() == StatusCode::kAlreadyExists) return false;
  std::string text = status.ToString();
  if (text != last_error_) {
    TW_LOG(kWarn, "leader election request failed",
           {{"request", request},
            {"lease", config_.lease_namespace + "/" + config_.lease_name},
            {"error", text}});
    last_error_ = std::move(text);
  }
  return false;
}

void LeaderElector::Release() {
  auto current = client_->Get(kinds::kLease, config_.lease_namespace, config_.lease_name);
  if (!current.ok()) return;
  json lease = std::move(*current);
  if (lease["spec"].value("holderIdentity", "") != config_.identity) return;
  std::string now = MicroTimeNow();
  lease["spec"]["holderIdentity"] = "";
  lease["spec"]["leaseDurationSeconds"] = 1;
  lease["spec"]["renewTime"] = now;
  client_->Update(kinds::kLease, config_.lease_namespace, config_.lease_name, lease)
      .status()
      .IgnoreError();  // best effort: the lease expires anyway
}

void LeaderElector::Run() {
  while (!stop_) {
    // Candidate: poll until we hold the lease.
    while (!stop_ && !TryAcquireOrRenew()) Sleep(Jittered(config_.retry_period, 1.2));
    if (stop_) break;
    leader_ = true;
    last_renew_ = std::chrono::steady_clock::now();
    TW_LOG(kInfo, "became leader", {{"identity", config_.identity}, {"lease", config_.lease_name}});
    if (on_started_) on_started_();
    // Leader: renew every retry period; give up after renew_deadline without success.
    while (!stop_) {
      Sleep(config_.retry_period);
      if (stop_) break;
      if (TryAcquireOrRenew()) {
        last_renew_ = std::chrono::steady_clock::now();
        continue;
      }
      if (std::chrono::steady_clock::now() - last_renew_ > config_.renew_deadline) break;
      // Retry quickly within the deadline.
    }
    leader_ = false;
    if (on_stopped_) on_stopped_();
    if (stop_) {
      Release();
      break;
    }
    TW_LOG(kWarn, "lost leadership", {{"identity", config_.identity}});
    observed_record_.clear();
  }
}

}  // namespace tw::op
