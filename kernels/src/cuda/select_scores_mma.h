// Stage-1 head-group scores on tensor cores (internal; SelectBlocks dispatches).
#pragma once

#include <cstdint>

#include "tome/kernels/cuda/types.h"

namespace tome::kernels::cuda {

struct GroupScoresArgs {
  const bf16* q = nullptr;  // the group's first head of the tile's first query
  int64_t q_stride = 0, num_tokens = 0, first_position = 0;
  int heads = 0;                 // heads of the group
  const bf16* k1 = nullptr;      // [n1, d] level-1 summaries (dense)
  const bf16* k2 = nullptr;      // [n2, d] level-2 summaries
  int64_t n1 = 0, n2 = 0, head_dim = 0;
  int64_t kernel_size = 0, kernel_stride = 0;  // level 1 (level 2 is 4x both)
  float scale = 1.0f;
  bf16* out = nullptr;  // [num_tokens, ld]: Sc(p, j) for j < visible K1 windows of p
  int64_t ld = 0;
};

// Whether GroupScores takes a call of this shape: 8 to 16 heads a group, d 64 or 128, and
// enough queries to fill the GPU (a CTA per 8 queries walks every summary; decode and short
// calls go to cuBLAS, which spreads one query's summaries over the whole GPU).
bool GroupScoresOnTensorCores(int64_t num_tokens, int64_t heads_per_group, int64_t head_dim);

// For each query p of the tile and visible level-1 window j:
//   Sc(p, j) = bf16( Σ_h exp(scale q_h(p)·K1_j − LSE2_h(p)) ),
//   LSE2_h(p) = log Σ_{visible j'} exp(scale q_h(p)·K2_j'),
// +inf for every visible window while no K2 window is visible (the reference's rule). The
// scores never leave registers: one warp per query holds its heads as the rows of m16 tiles.
cudaError_t GroupScores(const GroupScoresArgs& args, cudaStream_t stream);

}  // namespace tome::kernels::cuda
