#include "cluster/etcd_records.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tome/base/status_macros.h"

namespace tome::services::cluster {

std::string EtcdRecordStore::KindPrefix(storage::RecordKind kind) const {
  return absl::StrCat(prefix_, static_cast<int>(kind), "/");
}

absl::Status EtcdRecordStore::Put(storage::RecordKind kind, absl::string_view id,
                                  absl::string_view value) {
  return etcd_->Put(KindPrefix(kind) + std::string(id), std::string(value)).status();
}

absl::StatusOr<std::string> EtcdRecordStore::Get(storage::RecordKind kind, absl::string_view id) {
  TOME_ASSIGN_OR_RETURN(EtcdKeyValue kv, etcd_->Get(KindPrefix(kind) + std::string(id)));
  return std::move(kv.value);
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> EtcdRecordStore::List(
    storage::RecordKind kind) {
  const std::string prefix = KindPrefix(kind);
  TOME_ASSIGN_OR_RETURN(EtcdRange range, etcd_->GetPrefix(prefix));
  std::vector<std::pair<std::string, std::string>> out;
  for (EtcdKeyValue& kv : range.kvs) {
    out.emplace_back(kv.key.substr(prefix.size()), std::move(kv.value));
  }
  return out;
}

absl::StatusOr<int64_t> EtcdRecordStore::NextId(absl::string_view name, int64_t first) {
  const std::string key = KindPrefix(storage::RecordKind::kServer) + std::string(name);
  for (int attempt = 0; attempt < 100; ++attempt) {
    int64_t id = first;
    int64_t revision = 0;
    auto current = etcd_->Get(key);
    if (current.ok()) {
      if (!absl::SimpleAtoi(current->value, &id)) {
        return absl::DataLossError(absl::StrCat("the counter ", key, " in etcd is damaged"));
      }
      revision = current->mod_revision;
    } else if (!absl::IsNotFound(current.status())) {
      return current.status();
    }
    TOME_ASSIGN_OR_RETURN(bool written, etcd_->CompareAndPut(key, revision, absl::StrCat(id + 1)));
    if (written) return id;
  }
  return absl::AbortedError(absl::StrCat("the counter ", key, " is contended; try again"));
}

}  // namespace tome::services::cluster
