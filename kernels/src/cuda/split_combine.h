// The second kernel of split attention (internal): when the blocks of one query tile are
// split over several CTAs (decode steps, short calls), each writes unnormalised partial
// outputs and its rows' running maxima and normalisers, and this kernel merges them.
#pragma once

#include <cstdint>

#include "tome/kernels/cuda/types.h"

namespace tome::kernels::cuda {

// Most splits of one tile (the merge keeps their maxima in shared memory).
inline constexpr int kMaxSplits = 64;

// out[row] = Σ_s o_s e^(m_s − M) / Σ_s l_s e^(m_s − M) over the splits s of each (token, head)
// row: part_o [splits, rows, head_dim] fp32, part_ml [splits, rows, 2] (m in natural-log
// units, -inf for a split that attended nothing, whose o must be zeros). Row r is token
// r / num_q_heads, head r % num_q_heads of out (out_stride elements between tokens).
cudaError_t CombineSplits(const float* part_o, const float* part_ml, int splits, int64_t rows,
                          int64_t head_dim, int64_t num_q_heads, bf16* out, int64_t out_stride,
                          cudaStream_t stream);

}  // namespace tome::kernels::cuda
