// The live workers of a cluster, as registered in etcd: each worker keeps the key
// <prefix>/workers/<worker id> alive under a lease, with a JSON value {"address": ...}.
// WorkerSet is the pure bookkeeping (unit-tested); MembershipWatcher keeps one up to date
// from an initial range read plus a watch, reading again whenever the watch breaks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "cluster/etcd_client.h"
#include "cluster/worker_records.h"

namespace tome::services::cluster {

// Live workers keyed by id. Not thread-safe (MembershipWatcher locks around it).
class WorkerSet {
 public:
  explicit WorkerSet(std::string workers_prefix) : prefix_(std::move(workers_prefix)) {}

  // Replaces the set with the keys of a range read.
  void Reset(const std::vector<EtcdKeyValue>& kvs);
  // Applies watch events in order. Returns whether the set changed.
  bool Apply(const std::vector<EtcdEvent>& events);

  std::vector<WorkerInfo> workers() const;
  std::vector<std::string> ids() const;

 private:
  // The worker id of `key`, or "" for a key that is not a worker's.
  std::string IdOf(const std::string& key) const;
  bool Put(const EtcdKeyValue& kv);

  std::string prefix_;
  std::map<std::string, WorkerInfo> workers_;
};

// Keeps a WorkerSet current from etcd on a background thread. Thread-safe.
class MembershipWatcher {
 public:
  MembershipWatcher(EtcdClient* etcd, const std::string& cluster_prefix);
  ~MembershipWatcher();  // stops the thread (cancels the etcd client's watches)

  // Starts the thread after a first successful read (Unavailable if etcd cannot be read).
  absl::Status Start();
  std::vector<WorkerInfo> workers() const;
  // Bumped on every change (callers cache placement decisions per generation).
  int64_t generation() const { return generation_.load(); }
  // Blocks until some worker set satisfies `done` or `timeout` passes; returns whether it did.
  bool WaitFor(const std::function<bool(const std::vector<WorkerInfo>&)>& done,
               absl::Duration timeout);
  // Calls `on_change` with the current set now and after every change (on the watcher's
  // thread; it must not call back into this watcher's Start or destructor).
  void SetListener(std::function<void(const std::vector<WorkerInfo>&)> on_change);

 private:
  void Run();
  absl::StatusOr<int64_t> Resync();
  void NotifyListener();

  EtcdClient* etcd_;
  const std::string prefix_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  WorkerSet set_;  // guarded by mu_
  bool stopping_ = false;
  std::atomic<int64_t> generation_{0};
  int64_t revision_ = 0;  // of the last read (Run's thread only)
  std::thread thread_;
  std::mutex listener_mu_;
  std::function<void(const std::vector<WorkerInfo>&)> listener_;  // guarded by listener_mu_
};

}  // namespace tome::services::cluster
