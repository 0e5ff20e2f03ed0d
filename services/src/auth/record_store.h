// Where TenantRegistry keeps tenants and API keys: the context store (single-process mode)
// or etcd (the routers of a cluster, services/src/cluster/etcd_records.h). Implementations
// are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tome/storage/context_store.h"

namespace tome::services {

class RecordStore {
 public:
  virtual ~RecordStore() = default;

  virtual absl::Status Put(storage::RecordKind kind, absl::string_view id,
                           absl::string_view value) = 0;
  // NotFound if absent.
  virtual absl::StatusOr<std::string> Get(storage::RecordKind kind, absl::string_view id) = 0;
  // All records of `kind` as (id, value).
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List(
      storage::RecordKind kind) = 0;
  // Returns the value of counter `name` (`first` when it does not exist yet) and advances
  // it, atomically even against other processes sharing the records.
  virtual absl::StatusOr<int64_t> NextId(absl::string_view name, int64_t first) = 0;
};

// Records kept in `store` (not owned), as service records.
std::unique_ptr<RecordStore> ContextStoreRecords(storage::ContextStore* store);

}  // namespace tome::services
