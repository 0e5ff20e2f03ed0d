// TomeCore: the domain core of the server, free of RPC types (like TF Serving's ServerCore).
// The gRPC services are thin: they authenticate, validate, call the core and convert
// statuses. Every method takes the calling Principal and derives all isolation from it:
// another tenant's private document or session reads exactly like a missing one.
// Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "auth/tenants.h"
#include "auth/usage.h"
#include "document_states.h"
#include "ingestion.h"
#include "memory_admission.h"
#include "request_validation.h"
#include "scheduler.h"
#include "sessions.h"
#include "tome/engine/block_cache.h"
#include "tome/engine/engine.h"
#include "tome/engine/prompt.h"
#include "tome/storage/context_store.h"

namespace tome::services {

struct CoreOptions {
  std::string model_dir;
  // Holds the context store (store/) and bootstrap-credentials.
  std::string data_dir;
  int num_threads = 0;
  // Where the engine runs: CPU, or CUDA devices cuda_device .. cuda_device +
  // tensor_parallel - 1 (tensor parallelism needs CUDA with NCCL; on the CPU it splits the
  // model over in-process ranks, which tests use). States of a tensor-parallel engine are
  // always held whole (no on-demand opening yet).
  engine::DeviceKind device = engine::DeviceKind::kCpu;
  int cuda_device = 0;
  int tensor_parallel = 1;
  engine::DenseThresholdMode dense_mode = engine::DenseThresholdMode::kAlwaysSparse;
  int64_t max_chunk_tokens = 512;
  // Commit a checkpoint (Lightning states + watermark) every this many tokens; 0 picks
  // the default policy (DefaultCheckpointTokens).
  int64_t checkpoint_tokens = 0;
  int64_t state_cache_bytes = int64_t{2} << 30;
  // Storage-backed attention: a document state whose KV would exceed this many bytes is
  // loaded on demand (its KV blocks stay in the store; sparse layers fetch those they
  // select through a block cache of block_cache_bytes in engine memory over
  // host_block_cache_bytes in host memory).
  int64_t resident_kv_limit_bytes = int64_t{4} << 30;
  int64_t block_cache_bytes = int64_t{1} << 30;
  int64_t host_block_cache_bytes = int64_t{2} << 30;
  // Threads reading KV blocks from the store in parallel (storage::StoreOptions::read_threads).
  int store_read_threads = 8;
  // Helper threads running store batches in parallel: the block cache's fetches and the
  // engine's state loading (EngineOptions::state_read_threads).
  int fetch_threads = 3;
  // Admission control: the engine memory all running questions may reserve together (the
  // states they open, their prompt and answer tokens; 0: no limit), and how long a question
  // waits for memory before RESOURCE_EXHAUSTED (never past its own deadline).
  int64_t ask_memory_bytes = 0;
  absl::Duration admission_wait = absl::Seconds(30);
  // The engine memory the in-progress states of ingested documents may hold together (each
  // holds its whole state until its last checkpoint; 0: no limit). IngestionOptions::memory.
  int64_t ingest_memory_bytes = 0;
  int64_t max_document_bytes = int64_t{1} << 30;  // per AppendText call
  int64_t max_question_bytes = 16 << 10;
  int32_t default_max_tokens = 256;
  int32_t max_generated_tokens = 4096;
  int64_t default_session_ttl_seconds = 24 * 3600;
  size_t session_states = 64;  // sessions kept in memory
  bool sync_writes = true;
  // Cluster worker (services/src/cluster): calls are authenticated by the router, which
  // forwards the caller's principal with this shared token; API keys are not accepted.
  // Empty: single-process mode (API keys from this store).
  std::string peer_token;
};

// The default checkpoint spacing: Lightning checkpoints cost at most a tenth of the bytes
// of the KV they cover, and come at least every 1024 tokens (a multiple of 1024).
int64_t DefaultCheckpointTokens(const engine::StateSizes& sizes);

// A document as a caller sees it.
struct DocumentView {
  storage::DocumentRecord record;
  bool owned = false;
};

struct AppendResult {
  storage::DocumentRecord record;
  int64_t appended_bytes = 0;
  int64_t appended_tokens = 0;
};

// A span of the document an answer drew on (see v1::Citation).
struct Citation {
  std::string section;
  int64_t byte_begin = 0, byte_end = 0;
  int64_t line_begin = 0, line_end = 0;
  std::string snippet;
  double weight = 0;
};

struct AskResult {
  std::string answer;
  std::string stop_reason;
  std::string state_source;
  std::string session_id;
  int64_t turn = 0;
  int64_t document_tokens = 0;
  int64_t prompt_tokens = 0;
  int64_t document_prefill_tokens = 0;
  int64_t generated_tokens = 0;
  double queue_ms = 0, load_state_ms = 0, prefill_ms = 0, first_token_ms = 0, total_ms = 0;
  double decode_tokens_per_second = 0;
  std::vector<Citation> citations;
};

class TomeCore {
 public:
  static absl::StatusOr<std::unique_ptr<TomeCore>> Create(const CoreOptions& options);
  ~TomeCore();

  const engine::Engine& engine() const { return *engine_; }
  const std::string& model_fingerprint() const { return fingerprint_; }
  int64_t checkpoint_tokens() const { return checkpoint_tokens_; }
  int64_t max_document_bytes() const { return options_.max_document_bytes; }
  RequestLimits Limits() const {
    return {options_.max_document_bytes, options_.max_question_bytes,
            options_.max_generated_tokens};
  }
  TenantRegistry& tenants() { return *tenants_; }
  // The store itself (cluster workers keep replica text beside the documents).
  storage::ContextStore& store() { return *store_; }
  const std::string& peer_token() const { return options_.peer_token; }
  UsageTracker& usage() { return usage_; }
  IngestionManager& ingestion() { return *ingestion_; }
  BatchScheduler& scheduler() { return *scheduler_; }
  const DocumentStateCache& state_cache() const { return *cache_; }
  const MemoryAdmission& admission() const { return *admission_; }
  const MemoryAdmission& ingest_admission() const { return *ingest_admission_; }
  MemoryAdmission& ingest_admission() { return *ingest_admission_; }  // tests hold memory
  engine::BlockCacheStats block_cache_stats() const { return block_cache_->stats(); }
  int64_t generated_tokens() const { return generated_tokens_.load(); }
  // Estimated bytes a tenant stores (from its document records).
  absl::StatusOr<int64_t> TenantStoredBytes(storage::TenantId tenant);

  // Authenticates an API key (the bearer token of a call).
  absl::StatusOr<Principal> Authenticate(absl::string_view secret);
  // A concurrent-call slot of the caller's tenant (admin calls are not limited).
  absl::StatusOr<std::unique_ptr<UsageTracker::CallSlot>> Admit(const Principal& caller);

  // --- documents ---------------------------------------------------------------------------
  // `chosen_id` 0: the store's next id; else that id (cluster mode, see
  // ContextStore::CreateDocumentWithId).
  absl::StatusOr<DocumentView> CreateDocument(const Principal& caller, const std::string& name,
                                              storage::DocumentId chosen_id = 0);
  absl::StatusOr<DocumentView> GetDocument(const Principal& caller, storage::DocumentId id);
  absl::StatusOr<std::vector<DocumentView>> ListDocuments(const Principal& caller,
                                                          storage::DocumentId after, int limit,
                                                          bool include_shared);
  absl::Status DeleteDocument(const Principal& caller, storage::DocumentId id);
  absl::StatusOr<AppendResult> AppendText(const Principal& caller, storage::DocumentId id,
                                          const std::string& text,
                                          const std::vector<SectionStart>& sections = {});
  absl::StatusOr<DocumentView> ShareDocument(const Principal& caller, storage::DocumentId id,
                                             const std::vector<storage::TenantId>& tenants,
                                             bool is_public);
  // Recomputes the model state of a FAILED document from its stored token ids (owner only):
  // the stored state is discarded and ingestion starts again from token 0. For a document
  // whose state was found damaged or computed by another model. FailedPrecondition for a
  // document that is not FAILED.
  absl::StatusOr<DocumentView> ReingestDocument(const Principal& caller, storage::DocumentId id);
  absl::StatusOr<std::vector<storage::SectionInfo>> ListSections(const Principal& caller,
                                                                 storage::DocumentId id);
  absl::StatusOr<int64_t> StoredBytes(const storage::DocumentRecord& record);
  // Streams progress of `id` to `listener` (first call immediately with the current record)
  // until `listener` returns false or the document is READY/FAILED/deleted; blocks until
  // then or until `cancelled` returns true.
  absl::Status WatchIngestion(const Principal& caller, storage::DocumentId id,
                              const std::function<bool(const IngestionProgress&)>& listener,
                              const std::function<bool()>& cancelled);

  // --- questions and sessions --------------------------------------------------------------
  // Answers `params.question` about a document or within a session; `on_delta` receives
  // answer text as it is generated (returning false stops generation); `cancelled` is
  // polled.
  absl::StatusOr<AskResult> Ask(const Principal& caller, const AskParams& params,
                                const std::function<bool(const std::string&)>& on_delta,
                                const std::function<bool()>& cancelled);
  absl::StatusOr<SessionInfo> CreateSession(const Principal& caller, storage::DocumentId id,
                                            int64_t version);
  absl::StatusOr<SessionInfo> GetSession(const Principal& caller, const std::string& id);
  absl::StatusOr<std::vector<SessionInfo>> ListSessions(const Principal& caller,
                                                        storage::DocumentId document);
  absl::StatusOr<SessionInfo> ForkSession(const Principal& caller, const std::string& id);
  absl::Status DeleteSession(const Principal& caller, const std::string& id);
  // Deletes expired sessions now (also runs every minute in the background).
  absl::StatusOr<int64_t> CollectExpiredSessions();

  // The model state of document `record` after its first `num_tokens` tokens (<= its
  // watermark): the cached or stored state when a checkpoint sits exactly there, else the
  // nearest earlier checkpoint plus the tokens after it, recomputed. `recomputed` receives
  // that token count, `source` where the state came from.
  absl::StatusOr<std::shared_ptr<const engine::Sequence>> StateAt(
      const storage::DocumentRecord& record, int64_t num_tokens, int64_t* recomputed,
      std::string* source);

 private:
  explicit TomeCore(CoreOptions options) : options_(std::move(options)) {}

  // The record of document `id` if the caller may read it; NotFound otherwise (whether it
  // does not exist or is another tenant's private document).
  absl::StatusOr<DocumentView> Readable(const Principal& caller, storage::DocumentId id);
  // Like Readable, but PermissionDenied for a document the caller may only read.
  absl::StatusOr<storage::DocumentRecord> Owned(const Principal& caller, storage::DocumentId id);
  absl::StatusOr<Quotas> QuotasOf(storage::TenantId tenant);
  // After loading the stored state of `record` failed with `error`: if the error means the
  // state is damaged (not a transient I/O error), marks the document FAILED saying so.
  void MarkStateDamaged(const storage::DocumentRecord& record, const absl::Status& error);
  // `status` of a forward pass over `sequence` (of `record`'s state): where it failed because
  // the state's background load did (a damaged record read after LoadStateOnDemand
  // returned), the stored state is marked damaged as a failed load is, and that error
  // returned.
  absl::Status LoadedOrDamaged(const storage::DocumentRecord& record,
                               const engine::Sequence& sequence, absl::Status status);
  // Whether a stored state of `tokens` tokens is opened on demand (its KV left in the store)
  // rather than whole: more KV than resident_kv_limit_bytes, on a one-rank engine.
  bool OpensOnDemand(int64_t tokens) const;
  // Reserves engine memory for a question: its prompt and answer tokens on a fork, plus
  // opening `open_tokens` of stored state (0: the state is already in memory).
  absl::StatusOr<MemoryAdmission::Ticket> AdmitQuestion(const AskParams& params,
                                                        int64_t prompt_tokens,
                                                        int64_t open_tokens,
                                                        const std::function<bool()>& cancelled);
  absl::StatusOr<AskResult> AskInSession(const Principal& caller, const AskParams& params,
                                         const std::function<bool(const std::string&)>& on_delta,
                                         const std::function<bool()>& cancelled);
  // Generates an answer on `sequence` (whose last prefill returned `logits`), and cites the
  // blocks of `record`'s first `doc_tokens` tokens that the answer drew on most.
  absl::Status Answer(const Principal& caller, engine::Sequence& sequence,
                      std::vector<float> logits, const AskParams& params,
                      const storage::DocumentRecord& record, int64_t doc_tokens,
                      const std::function<bool(const std::string&)>& on_delta,
                      const std::function<bool()>& cancelled, AskResult* result,
                      engine::GenerateResult* generated);
  // The `max` blocks with the most evidence, as spans of the document's text.
  absl::StatusOr<std::vector<Citation>> Cite(const storage::DocumentRecord& record,
                                             int64_t doc_tokens,
                                             const std::vector<double>& evidence, int max);
  void SessionCollector();

  CoreOptions options_;
  int64_t checkpoint_tokens_ = 0;
  std::string fingerprint_;
  std::unique_ptr<engine::Engine> engine_;
  std::shared_ptr<engine::BlockCache> block_cache_;  // freed before the engine
  std::unique_ptr<engine::PromptFormat> prompt_;
  std::unique_ptr<storage::ContextStore> store_;
  std::unique_ptr<TenantRegistry> tenants_;
  UsageTracker usage_;
  std::unique_ptr<DocumentStateCache> cache_;
  std::unique_ptr<MemoryAdmission> admission_;
  std::unique_ptr<MemoryAdmission> ingest_admission_;
  std::unique_ptr<BatchScheduler> scheduler_;
  std::unique_ptr<IngestionManager> ingestion_;
  std::unique_ptr<SessionStore> sessions_;
  std::unique_ptr<SessionStates> session_states_;

  std::atomic<int64_t> generated_tokens_{0};
  std::mutex collector_mu_;
  std::condition_variable collector_cv_;
  bool stopping_ = false;
  std::thread collector_;
};

}  // namespace tome::services
