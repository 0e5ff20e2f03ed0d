// A worker's membership: keeps <prefix>/workers/<id> in etcd under a lease it refreshes every
// third of the lease's TTL, registering again (new lease) whenever the lease was lost, e.g.
// after etcd was unreachable for longer than the TTL. When the worker dies the lease expires
// and routers see the key vanish within the TTL. Thread-safe.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "cluster/etcd_client.h"
#include "cluster/membership.h"

namespace tome::services::cluster {

class WorkerRegistration {
 public:
  // Registers `worker` (Unavailable if etcd cannot be reached) and starts refreshing.
  static absl::StatusOr<std::unique_ptr<WorkerRegistration>> Start(
      EtcdClient* etcd, const std::string& cluster_prefix, WorkerInfo worker, int64_t ttl_seconds);
  // Deregisters (revokes the lease, so routers stop routing here at once).
  ~WorkerRegistration();

 private:
  WorkerRegistration(EtcdClient* etcd, std::string key, std::string value, int64_t ttl)
      : etcd_(etcd), key_(std::move(key)), value_(std::move(value)), ttl_seconds_(ttl) {}
  absl::Status Register();
  void Run();

  EtcdClient* etcd_;
  const std::string key_, value_;
  const int64_t ttl_seconds_;
  int64_t lease_ = 0;  // Run's thread only, after Start
  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tome::services::cluster
