// Tensor-parallel sharding arithmetic: which heads, KV groups, MLP columns and vocabulary
// rows a rank owns, and the checkpoint slices it uploads. Pure functions (no backend), so
// the partition is unit-tested without a GPU.
//
// Rank r of N owns, of every layer:
//   * Lightning heads [r·H/N, (r+1)·H/N): rows of q/k/v/z_proj, columns of o_proj, their
//     recurrent states and decay slopes;
//   * sparse KV groups [r·G/N, (r+1)·G/N) with their 16 (= Hq/G) query heads each: rows of
//     q_proj/o_gate (those heads) and k/v_proj (those groups), columns of o_proj, the
//     groups' KV pages, block summaries and block selection. With more ranks than groups
//     (N = R·G), the R ranks of group r/R each attend with 1/R of its query heads (their
//     o_gate rows and o_proj columns) but all hold the group's K/V and compute its block
//     selection from all of its query heads (every q_proj row of the group): the selection
//     needs the whole group's scores, and recomputing them costs less than an all-reduce of
//     score tiles before every top-k;
//   * MLP columns [r·F/N, (r+1)·F/N): rows of gate/up_proj, columns of down_proj;
//   * vocabulary rows [r·Vp, (r+1)·Vp) of lm_head with Vp = ⌈V/N⌉ (rows past V are zero).
// Everything else (embedding, norms) is replicated.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "tome/engine/config.h"
#include "tome/engine/safetensors.h"

namespace tome::engine {

struct ShardSpec {
  int rank = 0;
  int world = 1;
};

// One rank's share of the model's dimensions: counts and the first global index.
struct ShardDims {
  int64_t lightning_heads = 0, lightning_head0 = 0;
  int64_t q_heads = 0, q_head0 = 0;    // sparse-layer query heads this rank attends with
  int64_t kv_heads = 0, kv_head0 = 0;  // sparse-layer KV groups
  // Query heads whose scores select this rank's blocks: all heads of its groups (= q_heads
  // unless N > G).
  int64_t select_heads = 0, select_head0 = 0;
  // Whether this rank is the first of those sharing its KV group (always, unless N > G):
  // only that one reports the group's selection evidence and saves the group's state.
  bool first_of_group = true;
  int64_t intermediate = 0, intermediate0 = 0;
  int64_t vocab_rows = 0, vocab0 = 0;  // padded rows of lm_head (equal on every rank)
  int64_t vocab_valid = 0;             // rows of them inside the vocabulary
};

// InvalidArgument naming the dimension when `config` cannot be split `shard.world` ways.
absl::Status ValidateShard(const ModelConfig& config, const ShardSpec& shard);
absl::StatusOr<ShardDims> ComputeShardDims(const ModelConfig& config, const ShardSpec& shard);

// Rows [first, first + n) of a 2-D checkpoint tensor: a view into the same mapping.
TensorInfo SliceRows(const TensorInfo& t, int64_t first, int64_t n);
// Columns [first, first + n) of a 2-D checkpoint tensor, copied densely into `storage`
// (which the returned view points into; only the slice is ever copied).
TensorInfo SliceCols(const TensorInfo& t, int64_t first, int64_t n, std::vector<uint8_t>* storage);

}  // namespace tome::engine
