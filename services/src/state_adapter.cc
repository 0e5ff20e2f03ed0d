#include "state_adapter.h"

#include "absl/strings/str_cat.h"

namespace tome::services {

std::string BlockSourceId(const storage::DocumentRecord& record) {
  return absl::StrCat(record.tenant, "/", record.id, "@", record.created_micros);
}

storage::StateKey ToStorageKey(const engine::StateRecordKey& key) {
  return storage::StateKey{static_cast<uint8_t>(key.kind), key.layer, key.head, key.index,
                           key.rows};
}

absl::Status CheckpointSink::Put(const engine::StateRecordKey& key, absl::string_view bytes) {
  checkpoint_->Put(ToStorageKey(key), bytes);
  return absl::OkStatus();
}

absl::StatusOr<std::string> StoreSource::Get(const engine::StateRecordKey& key) {
  auto value = store_->GetState(tenant_, doc_, ToStorageKey(key));
  if (value.ok()) bytes_read_ += static_cast<int64_t>(value->size());
  return value;
}

std::vector<absl::StatusOr<std::string>> StoreSource::GetMany(
    absl::Span<const engine::StateRecordKey> keys) {
  std::vector<storage::StateKey> storage_keys;
  storage_keys.reserve(keys.size());
  for (const engine::StateRecordKey& key : keys) storage_keys.push_back(ToStorageKey(key));
  std::vector<absl::StatusOr<std::string>> values = store_->GetStates(tenant_, doc_, storage_keys);
  int64_t bytes = 0;
  for (const auto& value : values) {
    if (value.ok()) bytes += static_cast<int64_t>(value->size());
  }
  bytes_read_ += bytes;
  return values;
}

absl::Status StoreSource::ReadMany(absl::Span<const engine::StateRecordKey> keys,
                                   RecordVisitor visit) {
  std::vector<storage::StateKey> storage_keys;
  storage_keys.reserve(keys.size());
  for (const engine::StateRecordKey& key : keys) storage_keys.push_back(ToStorageKey(key));
  int64_t bytes = 0;
  absl::Status status = store_->VisitStates(
      tenant_, doc_, storage_keys, [&](size_t i, absl::StatusOr<absl::string_view> record) {
        if (!record.ok()) return record.status();
        bytes += static_cast<int64_t>(record->size());
        return visit(i, *record);
      });
  bytes_read_ += bytes;
  return status;
}

}  // namespace tome::services
