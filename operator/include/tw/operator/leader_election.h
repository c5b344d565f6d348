// LeaderElector: leader election on a coordination.k8s.io/v1 Lease, as client-go does it.
//
// A candidate polls the Lease every retry_period (jittered). It takes the lease when there is
// none, when it already holds it, or when the holder's record has not changed for
// lease_duration as measured on the LOCAL clock since this candidate last saw it change (the
// holder's renewTime is never compared with our clock: skew-proof). Every write is a PUT
// carrying the resourceVersion it read, so of two racing candidates one gets 409 and loses.
// The leader renews every retry_period; when it cannot renew for renew_deadline it stops
// leading (on_stopped_leading) and becomes a candidate again. Stop() releases a held lease
// (holderIdentity "" and a 1 s duration) so a successor need not wait out the lease.
//
// Threading: Run() owns one thread; callbacks run on it and must return quickly.
// IsLeader() may be called from any thread. Lifetime: the KubeClient outlives the elector.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "tw/operator/kube_client.h"

namespace tw::op {

struct LeaderElectionConfig {
  std::string lease_namespace = "default";
  std::string lease_name = "tw-operator-leader";
  // hostname_uuid by default (see DefaultIdentity()).
  std::string identity;
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
};

// "<hostname>_<random uuid>".
std::string DefaultIdentity();

class LeaderElector {
 public:
  LeaderElector(KubeClient* client, LeaderElectionConfig config,
                std::function<void()> on_started_leading, std::function<void()> on_stopped_leading);
  ~LeaderElector();

  void Start();
  // Stops the loop; releases the lease if held.
  void Stop();
  bool IsLeader() const { return leader_.load(); }
  const std::string& identity() const { return config_.identity; }

  // One acquire-or-renew attempt (public for tests). Returns true when we hold the lease.
  bool TryAcquireOrRenew();

 private:
  void Run();
  void Sleep(std::chrono::nanoseconds d);
  void Release();
  // Returns false after logging a failed Lease request once per distinct error (a 403 under
  // RBAC that lacks the Lease would otherwise leave a silent, eternal candidate); conflicts
  // and AlreadyExists are the normal outcome of a lost race and are not logged.
  bool Failed(const Status& status, const char* request);

  KubeClient* client_;
  LeaderElectionConfig config_;
  std::function<void()> on_started_;
  std::function<void()> on_stopped_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> leader_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  // The last record seen (holder + renewTime + transitions) and when, on our clock.
  std::string observed_record_;
  std::chrono::steady_clock::time_point observed_at_;
  std::chrono::steady_clock::time_point last_renew_;
  std::string last_error_;  // the last error Failed() logged; cleared by a success
};

}  // namespace tw::op
