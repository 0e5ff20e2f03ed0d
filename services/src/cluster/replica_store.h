// Replica text on a worker: the text, versions, sections and sharing of documents this
// worker does not serve but would take over if their owner left (it ranks second for them).
// Kept as service records in the worker's context store:
//   replica-meta/<doc>            DocumentMeta (text_bytes = the bytes held so far)
//   replica-text/<doc>/<offset>   the text from that byte offset (offset zero-padded)
// No model state: taking a document over costs one prefill. Thread-safe.
#pragma once

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "tome/internal/v1/worker.pb.h"
#include "tome/storage/context_store.h"

namespace tome::services::cluster {

class ReplicaStore {
 public:
  explicit ReplicaStore(storage::ContextStore* store) : store_(store) {}

  // present=false, text_bytes=0 when there is none.
  absl::StatusOr<internal::v1::ReplicaState> State(storage::DocumentId id);
  // Writes `text` at `offset` with `meta` (see WorkerService.PutReplica): offset 0 replaces
  // the replica; another offset must equal the bytes held (FailedPrecondition otherwise).
  // InvalidArgument when the bytes would pass meta's last version.
  absl::StatusOr<internal::v1::ReplicaState> Put(const internal::v1::DocumentMeta& meta,
                                                 int64_t offset, const std::string& text);
  // The whole replica: metadata and text. NotFound without one; FailedPrecondition when it
  // holds less text than its last version (an interrupted copy).
  absl::StatusOr<std::pair<internal::v1::DocumentMeta, std::string>> Read(storage::DocumentId id);
  absl::Status Delete(storage::DocumentId id);
  // Metadata (without sections) of the replicas `tenant` may read with ids above `after`,
  // in id order, at most `limit`.
  absl::StatusOr<std::vector<internal::v1::DocumentMeta>> List(storage::TenantId tenant,
                                                               storage::DocumentId after,
                                                               int limit);

 private:
  absl::StatusOr<internal::v1::DocumentMeta> Meta(storage::DocumentId id);
  absl::Status DeleteLocked(storage::DocumentId id);

  storage::ContextStore* store_;
  std::mutex mu_;
};

}  // namespace tome::services::cluster
