// The routers' RecordStore: tenants, API keys (as hashes) and the admin key hash, kept in
// etcd under <prefix>/records/<kind>/<id>, so that every router authenticates the same keys
// and no worker needs a tenant store. Counters advance by compare-and-swap, so routers
// creating tenants at the same time get distinct ids. Thread-safe.
#pragma once

#include <string>

#include "auth/record_store.h"
#include "cluster/etcd_client.h"

namespace tome::services::cluster {

class EtcdRecordStore final : public RecordStore {
 public:
  EtcdRecordStore(EtcdClient* etcd, const std::string& cluster_prefix)
      : etcd_(etcd), prefix_(cluster_prefix + "/records/") {}

  absl::Status Put(storage::RecordKind kind, absl::string_view id,
                   absl::string_view value) override;
  absl::StatusOr<std::string> Get(storage::RecordKind kind, absl::string_view id) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List(
      storage::RecordKind kind) override;
  absl::StatusOr<int64_t> NextId(absl::string_view name, int64_t first) override;

 private:
  std::string KindPrefix(storage::RecordKind kind) const;

  EtcdClient* etcd_;
  const std::string prefix_;
};

}  // namespace tome::services::cluster
