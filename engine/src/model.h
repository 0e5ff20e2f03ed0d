// The SALA forward pass over a Backend: weights in the backend's layout, workspace sized for
// the largest forward chunk (allocated once, so decoding allocates no activations), and the
// state operations (new, fork, save, load).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "backend.h"
#include "pending_load.h"
#include "record_reader.h"
#include "sequence_state.h"
#include "shard.h"
#include "staging_pool.h"
#include "tome/base/work_pool.h"
#include "tome/engine/config.h"
#include "tome/engine/options.h"
#include "tome/engine/safetensors.h"
#include "tome/engine/state_io.h"
#include "tome/kernels/sparse_params.h"

namespace tome::engine {

// Rows of one summary page (level 1 and level 2).
inline constexpr int64_t kSummaryPageRows = 256;

struct LayerWeights {
  MixerType type;
  Tensor input_norm, post_norm;  // [1, D]
  // Lightning: rows q | k | v | z (each H·d). Sparse: rows q (Hq·d) | k (G·d) | v (G·d) |
  // o_gate (Hq·d). One GEMM computes all four projections.
  Tensor in_proj;
  Tensor o_proj;                    // [D, H·d]
  Tensor q_norm, k_norm, o_norm;    // Lightning only
  Tensor gate_up;                   // [2F, D]: gate rows then up rows
  Tensor down;                      // [D, F]
};

// With a ShardSpec of world N > 1 the model is one rank of a tensor-parallel group
// (shard.h): it holds its share of the weights and of every sequence state, and its
// forward pass meets the other ranks' in Backend::AllReduceSum (after each mixer's and each
// MLP's output projection) and Backend::AllGatherCols (the Lightning output norm, which
// spans all heads, and the logits). Every rank must run the same calls with the same
// tokens; only the ranks' own states differ.
class Model {
 public:
  static absl::StatusOr<std::unique_ptr<Model>> Load(const ModelConfig& config,
                                                     const SafetensorsCheckpoint& checkpoint,
                                                     Backend* backend,
                                                     const EngineOptions& options,
                                                     ShardSpec shard = {});
  // The model of `config` with random weights generated on the backend from `seed`
  // (EngineOptions::random_weights_seed). A shard holds the same values as the matching
  // slice of the unsharded model.
  static absl::StatusOr<std::unique_ptr<Model>> CreateRandom(const ModelConfig& config,
                                                             Backend* backend,
                                                             const EngineOptions& options,
                                                             uint64_t seed, ShardSpec shard = {});

  const ModelConfig& config() const { return config_; }
  const ShardSpec& shard() const { return shard_; }

  absl::StatusOr<std::unique_ptr<SequenceState>> NewState();
  absl::StatusOr<std::unique_ptr<SequenceState>> ForkState(const SequenceState& state);

  // Runs `tokens` (any count; chunked internally) and appends them to `state`. Writes the
  // logits of the last token (or of all, per options) to `logits` (not when it is null: the
  // other ranks of a group). When `chunk_lock` is given it is held for each chunk, not for
  // the whole call, so other work can run between chunks of a long prefill. `call_end`,
  // when positive, is the sequence's length at the end of the caller's whole call (a caller
  // that chunks itself; the HF dense rule reads it), else state.num_tokens + tokens.size().
  absl::Status Forward(SequenceState& state, absl::Span<const int32_t> tokens,
                       const PrefillOptions& options, std::vector<float>* logits,
                       std::mutex* chunk_lock = nullptr, int64_t call_end = 0);

  // One token for each of `states` in one batched forward pass (continuous batching of
  // decode steps): the GEMMs run over all rows at once, attention and Lightning per
  // sequence. `logits[i]` receives the logits after tokens[i]. When `evidence[i]` is not
  // null, the pooled stage-1 score of every block that sequence i's sparse layers selected
  // dynamically is added to (*evidence[i])[block]. `logits` may be null (other ranks).
  absl::Status ForwardBatch(absl::Span<SequenceState* const> states,
                            absl::Span<const int32_t> tokens,
                            std::vector<std::vector<float>>* logits,
                            absl::Span<std::vector<double>* const> evidence);

  // This rank's share of the model (all of it when unsharded).
  const ShardDims& dims() const { return dims_; }

  absl::Status Save(const SequenceState& state, int64_t saved_tokens, StateSink& sink);
  // With `stored`, the KV blocks (all but the last few) stay in storage and are fetched
  // through its cache when queries select them (storage-backed attention); then, with
  // EngineOptions::overlap_state_loading, the sparse layers' records (summaries, last
  // blocks) are read in the background after Load returns, and the next forward pass takes
  // each layer when it reaches it (a read error surfaces there). Save needs FinishLoad first.
  absl::StatusOr<std::unique_ptr<SequenceState>> Load(
      int64_t num_tokens, StateSource& source,
      std::shared_ptr<const StoredBlocks> stored = nullptr);
  // Makes `state` storage-backed as Load with `stored` would have built it: its KV pages
  // before the last few leave memory (its state must be saved through num_tokens).
  void MoveBlocksToStorage(SequenceState& state, std::shared_ptr<const StoredBlocks> stored);
  // Waits for and takes every layer of `state` still being loaded; the load's error if a
  // read failed (the state is then unusable).
  absl::Status FinishLoad(SequenceState& state);

 private:
  Model(const ModelConfig& config, Backend* backend, const EngineOptions& options,
        ShardSpec shard, ShardDims dims);
  bool sharded() const { return shard_.world > 1; }
  // Sharded: `status` if it is an error, else Aborted if another rank's was (one tiny
  // all-reduce; every rank must call it at the same point).
  absl::Status AgreeAcrossRanks(absl::Status status);
  // From `checkpoint`, or random from `seed` when it is null.
  absl::Status LoadWeights(const SafetensorsCheckpoint* checkpoint, uint64_t seed);
  absl::Status AllocateWorkspace();

  // One sequence's rows of a forward pass: its tokens sit at workspace rows
  // [row0, row0 + tokens.size()) and positions first_position.. .
  struct Segment {
    SequenceState* state = nullptr;
    absl::Span<const int32_t> tokens;
    int64_t call_end = 0;  // the sequence's length after the whole call (HF dense rule)
    int64_t row0 = 0;
    int64_t first_position = 0;
    std::vector<double>* evidence = nullptr;
    int64_t rows() const { return static_cast<int64_t>(tokens.size()); }
  };
  // One forward pass over at most max_chunk rows in total. Per-token captures (options)
  // need a single segment, whose `chunk_offset` places them.
  absl::Status ForwardRows(std::vector<Segment>& segments, const PrefillOptions& options,
                           int64_t chunk_offset);
  void LightningMixer(int64_t layer, const std::vector<Segment>& segments, const Tensor& a,
                      const Tensor& out);
  absl::Status SparseMixer(int64_t layer, const std::vector<Segment>& segments,
                           const Tensor& a, const PrefillOptions& options,
                           int64_t chunk_offset, const Tensor& out);
  // The first KV block a storage-backed sequence of `num_tokens` keeps resident: the summary
  // windows of the next tokens reach back into the blocks after it.
  int64_t FirstResidentBlock(int64_t num_tokens) const;
  // Makes overlay_keys_/overlay_values_[layer] views of the sparse layer's pages plus,
  // fetched from storage, every absent block that `selected` (the host copy of these `rows`
  // queries' selection; all causal blocks when null) names; fetched_ holds those blocks
  // until the layer's attention is enqueued.
  absl::Status FetchStoredBlocks(const SequenceState& state, int64_t layer, const int32_t* selected,
                                 int64_t rows, int64_t last_position);
  // Appends the page(s) of one stored KV block or summary page record (`size` bytes at
  // `bytes`) to group g of `s`, queued on `pending`; DataLoss naming the record if its size
  // is wrong.
  absl::Status AppendStoredPage(SparseLayerState& s, int64_t g, const StateRecordKey& key,
                                const char* bytes, int64_t size, bool device_readable,
                                std::vector<HostPiece>& pending);
  // The sparse layers' records of a stored state of `num_tokens` (on demand: all but the
  // last KV blocks stay absent), in the order Load appends them.
  std::vector<PendingLoad::Layer> SparseLayerRecords(int64_t num_tokens, bool on_demand) const;
  // `count` absent KV pages in every group of `s`.
  static void AppendAbsentPages(SparseLayerState& s, int64_t count);
  // The pages of `keys` (read as `read`) appended to `s`, uploaded by one call.
  absl::Status AppendStoredRecords(SparseLayerState& s, absl::Span<const StateRecordKey> keys,
                                   const ReadRecords& read);
  // Takes the pages of every layer up to `layer` that `state` still lacks (a state being
  // loaded in the background); waits for the reads where they are not done.
  absl::Status AwaitLayer(SequenceState& state, int64_t layer);
  // Adds the dynamically selected blocks' scores of `rows` queries to `evidence`.
  void AddEvidence(const Tensor& selected, const Tensor& scores, int64_t rows,
                   std::vector<double>* evidence);
  absl::Status UpdateSummaries(SparseLayerState& s, int64_t old_tokens, int64_t new_tokens);
  absl::Status ComputeLogits(const Tensor& h_rows, std::vector<float>* logits, int64_t offset);
  // Copies activations (fp32 or bf16) into dense fp32 host memory.
  void ActivationsToHost(const Tensor& src, float* host);

  ModelConfig config_;
  Backend* backend_;
  EngineOptions options_;
  ShardSpec shard_;
  ShardDims dims_;  // this rank's heads, groups, MLP columns and vocabulary rows
  kernels::SparseParams sparse_params_;
  int64_t max_chunk_;

  std::vector<Buffer> weight_buffers_;
  Tensor embed_, final_norm_, lm_head_, slopes_;
  std::vector<LayerWeights> layers_;

  // Workspace (max_chunk rows each).
  Buffer ws_h_, ws_a_, ws_proj_, ws_mix_, ws_out_, ws_selected_, ws_scores_, ws_summary_,
      ws_logit_in_, ws_logits_;
  // Sharded only: all ranks' Lightning outputs (o_norm spans every head) and this rank's
  // vocabulary rows of the logits.
  Buffer ws_gather_, ws_logits_local_, ws_flag_;  // ws_flag_: AgreeAcrossRanks
  std::vector<float> host_hidden_;
  std::vector<int32_t> host_selected_;  // AddEvidence's scratch
  // A sparse layer's block selection of the storage-backed segments of a call, on the host.
  std::vector<int32_t> host_fetch_selection_;
  std::vector<float> host_scores_;
  std::vector<int32_t> batch_tokens_;
  std::vector<uint16_t> host_bf16_;
  // Per layer, one segment's view of a storage-backed sparse layer: its pages plus fetched
  // blocks. A view per layer keeps each layer's device page tables, so that a decode step
  // uploads only the entries its selection changed.
  std::vector<std::vector<PagedBuffer>> overlay_keys_, overlay_values_;
  std::vector<BlockCache::Block> fetched_;
  // Host-tier slots the device reads in place by uploads still queued (BlockCache::GetMany);
  // dropped once the stream has been synchronised.
  std::vector<std::shared_ptr<void>> upload_pins_;
  std::unique_ptr<WorkPool> read_pool_;  // Load's parallel reads
  std::unique_ptr<StagingPool> staging_pool_;  // Load's records in device-readable memory
};

}  // namespace tome::engine
