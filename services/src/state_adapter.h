// Connects the engine's state interfaces to the context store.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "tome/engine/state_io.h"
#include "tome/storage/context_store.h"

namespace tome::services {

storage::StateKey ToStorageKey(const engine::StateRecordKey& key);

// The name of a document's stored KV blocks in the engine's block cache: it changes when the
// id is re-created (a new creation time), never while the document grows (full blocks are
// immutable).
std::string BlockSourceId(const storage::DocumentRecord& record);

// Collects the engine's records into a store checkpoint (committed by the caller).
class CheckpointSink final : public engine::StateSink {
 public:
  explicit CheckpointSink(storage::ContextStore::Checkpoint* checkpoint)
      : checkpoint_(checkpoint) {}
  absl::Status Put(const engine::StateRecordKey& key, absl::string_view bytes) override;

 private:
  storage::ContextStore::Checkpoint* checkpoint_;
};

// Reads a document's committed records.
class StoreSource final : public engine::StateSource {
 public:
  StoreSource(storage::ContextStore* store, storage::TenantId tenant, storage::DocumentId doc)
      : store_(store), tenant_(tenant), doc_(doc) {}
  absl::StatusOr<std::string> Get(const engine::StateRecordKey& key) override;
  std::vector<absl::StatusOr<std::string>> GetMany(
      absl::Span<const engine::StateRecordKey> keys) override;
  // The store's bytes in place (ContextStore::VisitStates): no string per record.
  absl::Status ReadMany(absl::Span<const engine::StateRecordKey> keys,
                        RecordVisitor visit) override;
  int64_t bytes_read() const { return bytes_read_.load(); }

 private:
  storage::ContextStore* store_;
  storage::TenantId tenant_;
  storage::DocumentId doc_;
  std::atomic<int64_t> bytes_read_{0};  // Get may run on several threads (block fetches)
};

}  // namespace tome::services
