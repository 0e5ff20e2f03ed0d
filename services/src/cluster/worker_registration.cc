#include "cluster/worker_registration.h"

#include <glog/logging.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "tome/base/status_macros.h"

namespace tome::services::cluster {

absl::StatusOr<std::unique_ptr<WorkerRegistration>> WorkerRegistration::Start(
    EtcdClient* etcd, const std::string& cluster_prefix, WorkerInfo worker, int64_t ttl_seconds) {
  if (worker.id.empty() || worker.id.find('/') != std::string::npos) {
    return absl::InvalidArgumentError("a worker id must be non-empty and contain no '/'");
  }
  if (ttl_seconds < 2) return absl::InvalidArgumentError("the lease TTL must be at least 2 s");
  std::unique_ptr<WorkerRegistration> r(new WorkerRegistration(
      etcd, WorkersPrefix(cluster_prefix) + worker.id, EncodeWorkerValue(worker), ttl_seconds));
  TOME_RETURN_IF_ERROR(r->Register());
  r->thread_ = std::thread([p = r.get()] { p->Run(); });
  LOG(INFO) << "registered as " << r->key_ << " in etcd at " << etcd->endpoint();
  return r;
}

absl::Status WorkerRegistration::Register() {
  TOME_ASSIGN_OR_RETURN(int64_t lease, etcd_->GrantLease(ttl_seconds_));
  TOME_RETURN_IF_ERROR(etcd_->Put(key_, value_, lease).status());
  lease_ = lease;
  return absl::OkStatus();
}

void WorkerRegistration::Run() {
  const auto period = std::chrono::milliseconds(std::max<int64_t>(ttl_seconds_ * 1000 / 3, 500));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_cv_.wait_for(lock, period, [&] { return stopping_; })) {
    lock.unlock();
    if (lease_ != 0) {
      auto ttl = etcd_->KeepAlive(lease_);
      if (!ttl.ok()) {
        LOG(WARNING) << "worker lease refresh failed: " << ttl.status();
      } else if (*ttl <= 0) {
        LOG(WARNING) << "worker lease expired; registering again";
        lease_ = 0;
      }
    }
    if (lease_ == 0) {
      if (absl::Status s = Register(); !s.ok()) LOG(WARNING) << "registering: " << s;
    }
    lock.lock();
  }
}

WorkerRegistration::~WorkerRegistration() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (lease_ != 0) {
    if (absl::Status s = etcd_->RevokeLease(lease_); !s.ok()) {
      LOG(WARNING) << "deregistering: " << s << " (the lease will expire on its own)";
    }
  }
}

}  // namespace tome::services::cluster
