// Background ingestion: runs appended document text through the model and commits the state
// to the context store as durable checkpoints (a watermark), so a restart resumes where the
// last checkpoint left off. One worker thread; documents take turns one checkpoint slice at
// a time, so a huge ingestion does not starve a small one. Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "document_states.h"
#include "memory_admission.h"
#include "scheduler.h"
#include "tome/engine/engine.h"
#include "tome/storage/context_store.h"

namespace tome::services {

// The checkpoint policy: a checkpoint (the Lightning states, the KV blocks and summaries
// they need, and the watermark, in one batch) is committed
//   - every `checkpoint_tokens` tokens (counted from the previous checkpoint),
//   - at the end of every version (the text of each AppendText call), and
//   - at section boundaries at least `checkpoint_tokens / 4` tokens after the previous one,
// so the state at any offset is at most `checkpoint_tokens` tokens of recomputation away.
// Boundaries depend only on the document, so an interrupted ingestion that resumes from its
// last checkpoint computes exactly what an uninterrupted one does.
//
// Engine memory: a document being ingested holds its whole state in engine memory until its
// last checkpoint (then the state cache takes it). With `memory` set, each slice first
// reserves the state it will hold after the slice; a document whose state can never fit the
// budget fails with the reason, and one that does not fit within `memory_wait` (other
// documents' ingestion holds the memory) gives its memory back and resumes later from its
// last checkpoint, so ingestion never fails an allocation halfway through a slice.
//
// A document whose KV exceeds `resident_kv_limit_bytes` is ingested storage-backed: after each
// checkpoint its stored KV blocks (all but the last few) leave engine memory, and the next
// slices' sparse layers fetch the blocks they select through `block_cache`, so such a
// document holds its Lightning states, summaries and about one slice of KV (plus the shared
// block cache) rather than its whole state. It then reserves that much.
struct IngestionOptions {
  int64_t checkpoint_tokens = 4096;
  MemoryAdmission* memory = nullptr;  // null: no limit
  absl::Duration memory_wait = absl::Seconds(30);
  int64_t resident_kv_limit_bytes = std::numeric_limits<int64_t>::max();
  std::shared_ptr<engine::BlockCache> block_cache;  // null: always resident
};

struct IngestionProgress {
  storage::DocumentRecord record;
  double tokens_per_second = 0;  // over the current run of this document
  double eta_seconds = 0;
};

class IngestionManager {
 public:
  IngestionManager(engine::Engine* engine, BatchScheduler* scheduler,
                   storage::ContextStore* store, DocumentStateCache* cache,
                   IngestionOptions options);
  ~IngestionManager();

  // Starts the worker and queues every document of `tenants` whose state lags its text
  // (resuming ingestion interrupted by a restart).
  absl::Status Start(const std::vector<storage::TenantId>& tenants);
  void Stop();

  void Enqueue(storage::TenantId tenant, storage::DocumentId doc);
  // The document was deleted: stop working on it.
  void Forget(storage::DocumentId doc);

  using Listener = std::function<void(const IngestionProgress&)>;
  // `listener` is called (from the worker thread) after every commit of `doc` and when its
  // ingestion fails.
  uint64_t Subscribe(storage::DocumentId doc, Listener listener);
  void Unsubscribe(uint64_t subscription);

  // Blocks until `doc`'s state covers all of its tokens. FailedPrecondition if its ingestion
  // failed, NotFound if it is deleted, DeadlineExceeded at `deadline`, Cancelled when
  // `cancelled` returns true.
  absl::StatusOr<storage::DocumentRecord> WaitUntilIngested(
      storage::TenantId tenant, storage::DocumentId doc, absl::Time deadline,
      const std::function<bool()>& cancelled);

  // Tokens prefilled by ingestion since Start (a metric; also proves what was not redone).
  int64_t tokens_prefilled() const { return tokens_prefilled_.load(); }

 private:
  struct Work {
    storage::TenantId tenant = 0;
    std::unique_ptr<engine::Sequence> sequence;
    int64_t run_start_tokens = 0;
    absl::Time run_start;
    int64_t sections_version = -1;  // document version `section_starts` was read at
    std::vector<int64_t> section_starts;
    std::vector<MemoryAdmission::Ticket> memory;  // engine memory reserved for `sequence`
    int64_t reserved_bytes = 0;
  };

  void Run();
  // Ingests one checkpoint slice of `doc`; `done` is set when nothing is left to do.
  absl::Status IngestSlice(storage::TenantId tenant, storage::DocumentId doc, bool* done);
  absl::StatusOr<std::unique_ptr<engine::Sequence>> RestoreSequence(
      const storage::DocumentRecord& record);
  // The end of the slice starting at record.state_tokens (the next checkpoint).
  absl::StatusOr<int64_t> NextCheckpoint(const storage::DocumentRecord& record, Work& work);
  // Reserves engine memory for `work` to hold a state of `tokens` tokens. Unavailable when
  // it did not fit in time (the caller then lets go of the state and retries later);
  // ResourceExhausted when the whole document's state (`document_tokens`) never can.
  absl::Status ReserveMemory(storage::DocumentId doc, int64_t tokens, int64_t document_tokens,
                             Work& work);
  // Whether a document of `tokens` tokens is ingested storage-backed (IngestionOptions).
  bool StorageBacked(int64_t tokens) const;
  void Publish(const IngestionProgress& progress);
  bool Forgotten(storage::DocumentId doc);

  engine::Engine* engine_;
  BatchScheduler* scheduler_;
  storage::ContextStore* store_;
  DocumentStateCache* cache_;
  const IngestionOptions options_;

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable progress_cv_;
  std::deque<std::pair<storage::TenantId, storage::DocumentId>> queue_;
  std::set<storage::DocumentId> queued_;
  std::set<storage::DocumentId> forgotten_;
  // A subscription. Publish calls `listener` holding `call_mu`, so Unsubscribe can wait out
  // a call in progress and no call starts after it returns.
  struct Subscription {
    storage::DocumentId doc = 0;
    Listener listener;
    std::mutex call_mu;
    bool active = true;
  };
  std::map<uint64_t, std::shared_ptr<Subscription>> listeners_;
  uint64_t next_subscription_ = 1;
  bool stop_ = false;
  std::thread thread_;

  std::unordered_map<storage::DocumentId, Work> work_;  // worker thread only
  std::atomic<int64_t> tokens_prefilled_{0};
};

}  // namespace tome::services
