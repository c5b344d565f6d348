// Reconciler: one level-triggered, idempotent pass over one TokenWarehouse ("ns/name").
//
// Each pass reads the object and its children from the informer caches and:
//  1. deleting (deletionTimestamp set): deletes the children explicitly (what garbage
//     collection would do, but also where it is slow or absent), waits until they are gone
//     from the cache, then removes the finalizer (a merge patch carrying resourceVersion);
//  2. otherwise adds the finalizer first (before any child exists);
//  3. parses and checks the spec; a spec that is refused (schema-level errors, a config
//     tw_config rejects, a memory limit below the tiers' needs, an NVMe path another, older
//     TokenWarehouse already uses on the same nodes) gets ConfigValid=False and its children
//     are left as they were — no error, no retry loop: the next spec change brings it back;
//  4. server-side applies (field manager tw-operator, force) every child whose cached copy
//     does not carry the desired applied-hash (every child after ForceApplyNextPass()): twd
//     ConfigMap, headless Service, DaemonSet, peers ConfigMap (ready pods), optional
//     ServiceMonitor;
//  5. writes .status through /status when it differs from the cached one (PUT with the
//     resourceVersion; 409 → re-read and retry, at most 5 times).
//
// An object from the API server whose fields have the wrong types (a JSON type error anywhere
// in the pass) makes the pass fail with INVALID_ARGUMENT naming the object: it is logged and
// counted (malformed_objects()), the operator counts a reconcile error and retries it with
// backoff; the other objects are reconciled as usual.
//
// Threading: Reconcile() may run on several workers at once for different keys (the work
// queue never hands one key to two workers). It reads the informers and talks to the API
// server; it keeps no state of its own between passes except counters.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "tw/operator/informer.h"
#include "tw/operator/kube_client.h"
#include "tw/operator/render.h"
#include "tw/operator/spec.h"

namespace tw::op {

struct Caches {
  Informer* tokenwarehouses = nullptr;
  Informer* config_maps = nullptr;
  Informer* daemon_sets = nullptr;
  Informer* services = nullptr;
  Informer* pods = nullptr;
};

struct ReconcileResult {
  // Run again after this delay even without events (e.g. waiting for children to go).
  std::optional<std::chrono::nanoseconds> requeue_after;
};

class Reconciler {
 public:
  Reconciler(KubeClient* client, Caches caches, RenderOptions options);

  // REQUIRES: `key` is "namespace/name".
  StatusOr<ReconcileResult> Reconcile(const std::string& key);

  // Keys of TokenWarehouses whose status says they were refused for an NVMe path conflict
  // (re-checked when another TokenWarehouse changes or goes).
  // O(number of such keys): called on every TokenWarehouse event.
  std::vector<std::string> ConflictedKeys() const;

  // The next pass over `key` applies every child even when its applied-hash matches, which
  // undoes edits made by hand (the periodic resync marks every key).
  void ForceApplyNextPass(const std::string& key);

  uint64_t applies() const { return applies_.load(); }
  uint64_t status_writes() const { return status_writes_.load(); }
  uint64_t malformed_objects() const { return malformed_objects_.load(); }

 private:
  // Reconcile() without the guard against JSON type errors.
  StatusOr<ReconcileResult> ReconcileUnguarded(const std::string& key);
  StatusOr<ReconcileResult> Finalize(const Json& tw);
  Status EnsureFinalizer(Json& tw);
  // Why `tw` must be refused because of an older TokenWarehouse, or "".
  std::string FindNvmeConflict(const Json& tw, const TokenWarehouseSpec& spec) const;
  Status ApplyIfChanged(const ResourceType& type, Informer* cache, Json desired, bool force);
  std::vector<Json> PodsOf(const std::string& ns, const std::string& name) const;
  Status WriteStatus(const Json& tw, const Json& status);

  KubeClient* client_;
  Caches caches_;
  RenderOptions options_;
  void NoteConflict(const std::string& key, bool conflicted);

  mutable std::mutex mu_;
  std::set<std::string> conflicted_;   // guarded by mu_
  std::set<std::string> force_apply_;  // guarded by mu_
  std::atomic<uint64_t> applies_{0};
  std::atomic<uint64_t> status_writes_{0};
  std::atomic<uint64_t> malformed_objects_{0};
};

}  // namespace tw::op
