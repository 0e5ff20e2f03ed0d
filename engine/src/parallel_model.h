// Tensor parallelism inside one engine: N ranks, each a Model shard (shard.h) on its own
// backend, driven through the same steps by one thread per rank (RankPool). CUDA ranks use
// devices cuda_device .. cuda_device + N - 1 joined by NCCL; CPU ranks meet in process
// (local_collective.h), which runs the same sharded forward pass for tests. Rank 0's
// logits are returned. A sequence's state is rank 0's SequenceState with the other ranks'
// shares in `other_ranks`.
//
// States are saved and loaded in the unsharded record layout (a TP=2 engine reads what a
// TP=1 engine wrote and vice versa). A storage-backed (on-demand) sequence's ranks fetch
// their own groups' blocks, each into its own device's tier of the shared block cache. Not
// supported yet (Unimplemented): PrefillOptions::capture_selection.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "backend.h"
#include "model.h"
#include "rank_pool.h"
#include "sequence_state.h"
#include "tome/engine/config.h"
#include "tome/engine/options.h"
#include "tome/engine/safetensors.h"
#include "tome/engine/state_io.h"

namespace tome::engine {

class ParallelModel {
 public:
  // options.tensor_parallel ranks of `config`'s model: from `checkpoint`, or random weights
  // from options.random_weights_seed when it is null.
  static absl::StatusOr<std::unique_ptr<ParallelModel>> Create(
      const ModelConfig& config, const SafetensorsCheckpoint* checkpoint,
      const EngineOptions& options);
  // Frees every rank's model and backend on the rank's own thread.
  ~ParallelModel();

  int world() const { return pool_.size(); }
  const ModelConfig& config() const { return config_; }
  Backend* backend(int rank) const { return backends_[rank].get(); }

  absl::StatusOr<std::unique_ptr<SequenceState>> NewState();
  absl::StatusOr<std::unique_ptr<SequenceState>> ForkState(const SequenceState& state);
  // Model::Forward on every rank, chunk by chunk (`chunk_lock` held for each chunk; the
  // progress callback runs between chunks on the calling thread).
  absl::Status Forward(SequenceState& state, absl::Span<const int32_t> tokens,
                       const PrefillOptions& options, std::vector<float>* logits,
                       std::mutex* chunk_lock);
  absl::Status ForwardBatch(absl::Span<SequenceState* const> states,
                            absl::Span<const int32_t> tokens,
                            std::vector<std::vector<float>>* logits,
                            absl::Span<std::vector<double>* const> evidence);
  // Model::Save / Model::Load on every rank: KV records pass through (each group written
  // once, under its global index); a Lightning layer's record is assembled from, or split
  // into, the ranks' head rows. With `stored`, every rank's sequence is storage-backed
  // (Model::Load); its source is then read by every rank's thread at once.
  absl::Status SaveState(const SequenceState& state, int64_t saved_tokens, StateSink& sink);
  absl::StatusOr<std::unique_ptr<SequenceState>> LoadState(
      int64_t num_tokens, StateSource& source,
      std::shared_ptr<const StoredBlocks> stored = nullptr);
  // Model::MoveBlocksToStorage on every rank.
  absl::Status MoveBlocksToStorage(SequenceState& state, std::shared_ptr<const StoredBlocks> stored);

 private:
  ParallelModel(const ModelConfig& config, const EngineOptions& options, int world);
  static SequenceState* RankState(SequenceState& state, int rank) {
    return rank == 0 ? &state : state.other_ranks[rank - 1].get();
  }

  ModelConfig config_;
  EngineOptions options_;
  RankPool pool_;
  std::vector<std::unique_ptr<Backend>> backends_;
  std::vector<std::unique_ptr<Model>> models_;
};

}  // namespace tome::engine
