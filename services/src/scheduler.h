// The batch scheduler: the one place forward passes are started, so that many requests share
// the engine well.
//   - Decode steps of all running answers go into one batched forward pass per iteration
//     (continuous batching: an answer joins or leaves between any two iterations).
//   - Prefills (document ingestion, questions, session rebuilds) run one chunk at a time
//     between decode iterations, taking turns across tenants, so a huge ingestion never
//     stops questions from flowing.
//   - A cancelled prefill stops at its next chunk; a cancelled answer simply stops asking
//     for steps.
// Thread-safe; callers block until their work is done.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tome/engine/engine.h"
#include "tome/storage/context_store.h"

namespace tome::services {

struct SchedulerStats {
  int64_t decode_batches = 0;
  int64_t decode_steps = 0;    // sum of batch sizes
  int64_t max_batch = 0;
  int64_t prefill_chunks = 0;
  int64_t prefill_tokens = 0;
  int64_t queued_decodes = 0;  // now
  int64_t queued_prefills = 0; // now
};

class BatchScheduler {
 public:
  BatchScheduler(engine::Engine* engine, int64_t chunk_tokens);
  ~BatchScheduler();

  // Appends `token` to `sequence` in the next decode batch and returns the next logits.
  absl::StatusOr<std::vector<float>> Decode(engine::Sequence* sequence, int32_t token,
                                            std::vector<double>* evidence);
  // Appends `tokens` to `sequence`, a chunk at a time in turn with other tenants' prefills;
  // returns the logits after the last token. Cancelled when `cancelled` returns true
  // between chunks (the sequence then holds the chunks done).
  absl::StatusOr<std::vector<float>> Prefill(engine::Sequence* sequence,
                                             absl::Span<const int32_t> tokens,
                                             storage::TenantId tenant,
                                             const std::function<bool()>& cancelled = nullptr);
  SchedulerStats stats();

 private:
  struct DecodeItem {
    engine::Sequence* sequence;
    int32_t token;
    std::vector<double>* evidence;
    std::promise<absl::StatusOr<std::vector<float>>> done;
  };
  struct PrefillItem {
    engine::Sequence* sequence;
    absl::Span<const int32_t> tokens;
    size_t next = 0;
    std::function<bool()> cancelled;
    std::promise<absl::StatusOr<std::vector<float>>> done;
  };

  void Run();
  void RunDecodeBatch(std::vector<std::unique_ptr<DecodeItem>> batch);
  // Runs the next chunk of the next tenant's oldest prefill.
  void RunPrefillChunk();

  engine::Engine* engine_;
  const int64_t chunk_tokens_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<std::unique_ptr<DecodeItem>> decodes_;
  // Per tenant, its prefills in arrival order; `turns_` is the tenants' round-robin order.
  std::map<storage::TenantId, std::deque<std::unique_ptr<PrefillItem>>> prefills_;
  std::list<storage::TenantId> turns_;
  SchedulerStats stats_;
  std::thread thread_;
};

}  // namespace tome::services
