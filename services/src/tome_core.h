// TomeCore: the domain core of the server, free of RPC types (like TF Serving's ServerCore).
// The gRPC services are thin: they validate, call the core and convert statuses.
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "document_states.h"
#include "ingestion.h"
#include "tome/engine/engine.h"
#include "tome/engine/prompt.h"
#include "tome/storage/context_store.h"

namespace tome::services {

struct CoreOptions {
  std::string model_dir;
  std::string data_dir;
  int num_threads = 0;
  engine::DenseThresholdMode dense_mode = engine::DenseThresholdMode::kAlwaysSparse;
  int64_t max_chunk_tokens = 512;
  // Commit a checkpoint (Lightning states + watermark) every this many tokens; 0 picks
  // the default policy (DefaultCheckpointTokens).
  int64_t checkpoint_tokens = 0;
  int64_t state_cache_bytes = int64_t{2} << 30;
  int64_t max_document_bytes = int64_t{1} << 30;  // per AppendText call
  int64_t max_question_bytes = 16 << 10;
  int32_t default_max_tokens = 256;
  int32_t max_generated_tokens = 4096;
  bool sync_writes = true;
};

// A section starting in the text of one AppendText call, at a byte offset of that text.
struct SectionStart {
  std::string name;
  int64_t byte_offset = 0;
};

// The default checkpoint spacing: Lightning checkpoints cost at most a tenth of the bytes
// of the KV they cover, and come at least every 1024 tokens (a multiple of 1024).
int64_t DefaultCheckpointTokens(const engine::StateSizes& sizes);

struct AppendResult {
  storage::DocumentRecord record;
  int64_t appended_bytes = 0;
  int64_t appended_tokens = 0;
};

struct AskParams {
  std::string question;
  int32_t max_tokens = 0;  // 0 = default
  float temperature = 0;
  float top_p = 0;  // 0 = 1
  uint64_t seed = 0;
  int64_t version = 0;  // 0 = latest
  absl::Time deadline = absl::InfiniteFuture();
};

struct AskResult {
  std::string answer;
  std::string stop_reason;
  std::string state_source;
  int64_t document_tokens = 0;
  int64_t prompt_tokens = 0;
  int64_t document_prefill_tokens = 0;
  int64_t generated_tokens = 0;
  double queue_ms = 0, load_state_ms = 0, prefill_ms = 0, first_token_ms = 0, total_ms = 0;
  double decode_tokens_per_second = 0;
};

class TomeCore {
 public:
  static absl::StatusOr<std::unique_ptr<TomeCore>> Create(const CoreOptions& options);
  ~TomeCore();

  const engine::Engine& engine() const { return *engine_; }
  const std::string& model_fingerprint() const { return fingerprint_; }

  absl::StatusOr<storage::DocumentRecord> CreateDocument(const std::string& name);
  absl::StatusOr<storage::DocumentRecord> GetDocument(storage::DocumentId id);
  absl::StatusOr<std::vector<storage::DocumentRecord>> ListDocuments(storage::DocumentId after,
                                                                     int limit);
  absl::Status DeleteDocument(storage::DocumentId id);
  absl::StatusOr<AppendResult> AppendText(storage::DocumentId id, const std::string& text,
                                          const std::vector<SectionStart>& sections = {});
  absl::StatusOr<std::vector<storage::SectionInfo>> ListSections(storage::DocumentId id);
  absl::StatusOr<int64_t> StoredBytes(storage::DocumentId id);
  int64_t max_document_bytes() const { return options_.max_document_bytes; }

  // Streams progress of `id` to `listener` (first call immediately with the current record)
  // until `listener` returns false or the document is READY/FAILED/deleted; blocks until
  // then or until `cancelled` returns true.
  absl::Status WatchIngestion(storage::DocumentId id,
                              const std::function<bool(const IngestionProgress&)>& listener,
                              const std::function<bool()>& cancelled);

  // Answers `params.question` about document `id`; `on_delta` receives answer text as it is
  // generated (returning false stops generation); `cancelled` is polled.
  absl::StatusOr<AskResult> Ask(storage::DocumentId id, const AskParams& params,
                                const std::function<bool(const std::string&)>& on_delta,
                                const std::function<bool()>& cancelled);

  IngestionManager& ingestion() { return *ingestion_; }
  int64_t checkpoint_tokens() const { return checkpoint_tokens_; }

  // The model state of document `record` after its first `num_tokens` tokens (<= its
  // watermark): the cached or stored state when a checkpoint sits exactly there, else the
  // nearest earlier checkpoint plus the tokens after it, recomputed. `recomputed` receives
  // that token count, `source` where the state came from.
  absl::StatusOr<std::shared_ptr<const engine::Sequence>> StateAt(
      const storage::DocumentRecord& record, int64_t num_tokens, int64_t* recomputed,
      std::string* source);

 private:
  explicit TomeCore(CoreOptions options) : options_(std::move(options)) {}

  CoreOptions options_;
  int64_t checkpoint_tokens_ = 0;
  std::string fingerprint_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<engine::PromptFormat> prompt_;
  std::unique_ptr<storage::ContextStore> store_;
  std::unique_ptr<DocumentStateCache> cache_;
  std::unique_ptr<IngestionManager> ingestion_;
};

}  // namespace tome::services
