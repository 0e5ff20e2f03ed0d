#include "cluster/membership.h"

#include <glog/logging.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tome/base/status_macros.h"

namespace tome::services::cluster {

std::string WorkerSet::IdOf(const std::string& key) const {
  if (!absl::StartsWith(key, prefix_) || key.size() == prefix_.size()) return "";
  std::string id = key.substr(prefix_.size());
  if (id.find('/') != std::string::npos) return "";
  return id;
}

bool WorkerSet::Put(const EtcdKeyValue& kv) {
  const std::string id = IdOf(kv.key);
  if (id.empty()) return false;
  auto worker = DecodeWorkerValue(id, kv.value);
  if (!worker.ok()) {
    LOG(WARNING) << worker.status();
    return workers_.erase(id) > 0;
  }
  auto it = workers_.find(id);
  if (it != workers_.end() && it->second.address == worker->address) return false;
  workers_[id] = std::move(*worker);
  return true;
}

void WorkerSet::Reset(const std::vector<EtcdKeyValue>& kvs) {
  workers_.clear();
  for (const EtcdKeyValue& kv : kvs) Put(kv);
}

bool WorkerSet::Apply(const std::vector<EtcdEvent>& events) {
  bool changed = false;
  for (const EtcdEvent& e : events) {
    if (e.type == EtcdEvent::Type::kPut) {
      changed |= Put(e.kv);
    } else {
      const std::string id = IdOf(e.kv.key);
      if (!id.empty()) changed |= workers_.erase(id) > 0;
    }
  }
  return changed;
}

std::vector<WorkerInfo> WorkerSet::workers() const {
  std::vector<WorkerInfo> out;
  for (const auto& [id, w] : workers_) out.push_back(w);
  return out;
}

std::vector<std::string> WorkerSet::ids() const {
  std::vector<std::string> out;
  for (const auto& [id, w] : workers_) out.push_back(id);
  return out;
}

MembershipWatcher::MembershipWatcher(EtcdClient* etcd, const std::string& cluster_prefix)
    : etcd_(etcd), prefix_(WorkersPrefix(cluster_prefix)), set_(prefix_) {}

MembershipWatcher::~MembershipWatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  etcd_->CancelWatches();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<int64_t> MembershipWatcher::Resync() {
  TOME_ASSIGN_OR_RETURN(EtcdRange range, etcd_->GetPrefix(prefix_));
  {
    std::lock_guard<std::mutex> lock(mu_);
    set_.Reset(range.kvs);
  }
  ++generation_;
  changed_.notify_all();
  NotifyListener();
  return range.revision;
}

void MembershipWatcher::SetListener(std::function<void(const std::vector<WorkerInfo>&)> on_change) {
  {
    std::lock_guard<std::mutex> lock(listener_mu_);
    listener_ = std::move(on_change);
  }
  NotifyListener();
}

void MembershipWatcher::NotifyListener() {
  std::lock_guard<std::mutex> lock(listener_mu_);  // calls in order, one at a time
  if (listener_) listener_(workers());
}

absl::Status MembershipWatcher::Start() {
  TOME_ASSIGN_OR_RETURN(revision_, Resync());
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void MembershipWatcher::Run() {
  bool need_resync = false;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    if (need_resync) {
      auto revision = Resync();
      if (!revision.ok()) {
        LOG(WARNING) << "membership: " << revision.status() << "; retrying";
        std::unique_lock<std::mutex> lock(mu_);
        changed_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
        continue;
      }
      revision_ = *revision;
    }
    absl::Status ended =
        etcd_->Watch(prefix_, revision_ + 1, [&](const std::vector<EtcdEvent>& events) {
          bool changed;
          {
            std::lock_guard<std::mutex> lock(mu_);
            changed = set_.Apply(events);
          }
          for (const EtcdEvent& e : events) revision_ = std::max(revision_, e.kv.mod_revision);
          if (changed) {
            ++generation_;
            changed_.notify_all();
            NotifyListener();
          }
        });
    if (absl::IsCancelled(ended)) return;
    LOG(WARNING) << "membership watch ended: " << ended << "; reading the workers again";
    need_resync = true;
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stopping_; });
  }
}

std::vector<WorkerInfo> MembershipWatcher::workers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return set_.workers();
}

bool MembershipWatcher::WaitFor(const std::function<bool(const std::vector<WorkerInfo>&)>& done,
                                absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] {
    return stopping_ || done(set_.workers());
  }) && !stopping_;
}

}  // namespace tome::services::cluster
