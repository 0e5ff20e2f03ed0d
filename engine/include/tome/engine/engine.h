// The SALA inference engine: a loaded model on one backend, and the sequences it extends.
//
// A Sequence is the model state after some tokens: every Lightning layer's recurrent state
// and every sparse layer's paged KV and block summaries. Forking a sequence is cheap (full
// KV pages are shared, copy-on-write). Engine methods are thread-safe; forward passes are
// serialised internally (one runs at a time).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tome/engine/block_cache.h"
#include "tome/engine/config.h"
#include "tome/engine/options.h"
#include "tome/engine/state_io.h"
#include "tome/engine/tokenizer.h"

namespace tome::engine {

// Call first thing in main() of programs that run the CPU engine: picks the fastest BLAS
// kernels for this CPU (may re-execute the program once with an environment variable set).
void PrepareCpuProcess(char** argv);

class Backend;
class Model;
class ParallelModel;
struct SequenceState;

class Sequence {
 public:
  ~Sequence();
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  // Tokens processed so far (the next token's position).
  int64_t num_tokens() const;
  // Backend memory held by this sequence alone (pages shared with forks not counted).
  int64_t OwnedBytes() const;
  // The error of its background load (LoadStateOnDemand with overlap_state_loading), once a
  // read has failed: the sequence, and every fork of it, is unusable. OK otherwise.
  absl::Status LoadStatus() const;
  // True when its stored KV blocks stay in storage until selected (LoadStateOnDemand).
  bool on_demand() const;

 private:
  friend class Engine;
  explicit Sequence(std::unique_ptr<SequenceState> state);
  std::unique_ptr<SequenceState> state_;
};

// Bytes of model state, from the config and the backend's element types.
struct StateSizes {
  int64_t lightning_bytes = 0;           // all Lightning layers' recurrent states
  int64_t kv_bytes_per_token = 0;        // all sparse layers' keys and values
  int64_t summary_bytes_per_token = 0;   // all sparse layers' level-1 and level-2 summaries
};

// What a generation produced.
struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids, stop token excluded
  bool stopped_by_eos = false;
  bool cancelled = false;       // on_token returned false
};

class Engine {
 public:
  // Loads config, weights and tokenizer from options.model_dir. NotFound / InvalidArgument /
  // DataLoss name the file and the first problem found. With options.tensor_parallel > 1
  // the model is split over that many ranks (options.h); states are saved and loaded in
  // the same record layout as with one rank.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  ~Engine();

  const ModelConfig& config() const;
  const Tokenizer& tokenizer() const;
  const EngineOptions& options() const { return options_; }
  StateSizes state_sizes() const;

  // ResourceExhausted if the backend cannot hold the new state.
  absl::StatusOr<std::unique_ptr<Sequence>> NewSequence() const;
  absl::StatusOr<std::unique_ptr<Sequence>> Fork(const Sequence& sequence) const;

  // Appends `tokens` to the sequence and returns the logits after the last one ([vocab], or
  // [T, vocab] with options.all_logits). InvalidArgument for out-of-range ids; Cancelled if
  // on_progress returned false (the sequence then holds the chunks already processed).
  // Other forward passes may run between the chunks of a long prefill.
  absl::StatusOr<std::vector<float>> Prefill(Sequence& sequence,
                                             absl::Span<const int32_t> tokens,
                                             const PrefillOptions& options = {}) const;

  // One decode step for each of `sequences` (token i appended to sequence i) in one batched
  // forward pass; returns the next logits of each. `evidence`, if not empty, holds one
  // optional accumulator per sequence (GenerateOptions::block_evidence).
  absl::StatusOr<std::vector<std::vector<float>>> DecodeBatch(
      absl::Span<Sequence* const> sequences, absl::Span<const int32_t> tokens,
      absl::Span<std::vector<double>* const> evidence = {}) const;

  // Samples up to max_new_tokens tokens starting from `logits` (the logits after the last
  // token of the sequence), feeding each generated token back into the sequence (all but
  // the last when max_new_tokens stops it; the stop token is never fed).
  absl::StatusOr<GenerateResult> Generate(Sequence& sequence, std::vector<float> logits,
                                          const GenerateOptions& options) const;

  // Writes the records of the sequence's state that changed since it had `saved_tokens`
  // tokens (0 writes everything): all Lightning states, the KV blocks and summary pages
  // from the one holding token `saved_tokens` onward.
  absl::Status SaveState(const Sequence& sequence, int64_t saved_tokens, StateSink& sink) const;
  // Rebuilds a sequence of `num_tokens` tokens from stored records. A block or page record
  // may hold more rows than needed (the record of a longer prefix of the same sequence): its
  // first rows are used. NotFound if a record is missing, DataLoss if one has the wrong size.
  absl::StatusOr<std::unique_ptr<Sequence>> LoadState(int64_t num_tokens,
                                                      StateSource& source) const;

  // Storage-backed attention, for documents whose KV does not fit in device memory: a
  // cache of stored KV blocks in backend memory (LRU within `device_budget_bytes` on each
  // rank's device) over a host-memory tier (LRU within `host_budget_bytes`; 0 turns it off),
  // reading store batches on `read_threads` helper threads.
  std::shared_ptr<BlockCache> NewBlockCache(
      int64_t device_budget_bytes, int64_t host_budget_bytes,
      int read_threads = BlockCache::kDefaultReadThreads) const;
  // Like LoadState, but reads only the Lightning states, the block summaries and the last
  // few KV blocks now; sparse layers fetch the other blocks from `source` through `cache`
  // when their queries select them, so the result equals a fully loaded sequence's.
  // `source_id` names the stored blocks in the cache (it must change whenever they could).
  // A record missing later fails the forward pass that needed it (NotFound / DataLoss).
  // With tensor parallelism the ranks read `source` from their threads at once, so it must
  // be thread-safe.
  absl::StatusOr<std::unique_ptr<Sequence>> LoadStateOnDemand(
      int64_t num_tokens, std::shared_ptr<StateSource> source, std::shared_ptr<BlockCache> cache,
      std::string source_id) const;
  // Makes a sequence in memory storage-backed, as LoadStateOnDemand would have opened it:
  // its KV blocks but the last few leave memory and are fetched from `source` when
  // selected (forks keep the pages they share). Its state must be saved to `source`
  // through its num_tokens() (ingestion of documents larger than engine memory).
  absl::Status MoveBlocksToStorage(Sequence& sequence, std::shared_ptr<StateSource> source,
                                   std::shared_ptr<BlockCache> cache,
                                   std::string source_id) const;

 private:
  Engine(EngineOptions options, std::unique_ptr<Backend> backend, std::unique_ptr<Model> model,
         std::unique_ptr<ParallelModel> parallel, std::unique_ptr<Tokenizer> tokenizer);

  EngineOptions options_;
  ModelConfig config_;
  // One rank: backend_ and model_. Tensor parallelism (options.tensor_parallel > 1):
  // parallel_ holds every rank's backend and model.
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<ParallelModel> parallel_;
  std::unique_ptr<Tokenizer> tokenizer_;
  mutable std::mutex forward_mu_;
};

}  // namespace tome::engine
