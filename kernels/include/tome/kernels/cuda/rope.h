#pragma once

#include "tome/kernels/cuda/types.h"

namespace tome::kernels::cuda {

// Rotate-half RoPE in place on x[T, H, d] (row stride `row_stride`) at positions
// first_position.. . inv_freq (device, [d/2]) holds theta^(-2i/d) as the CPU computes it, so
// the fp32 angles float32(p) · inv_freq[i] are bit-identical to the reference's; rotation in
// fp32, the result rounded to the element type (SALA-MODEL.md §3.4).
cudaError_t Rope(bf16* x, int64_t num_tokens, int64_t num_heads, int64_t head_dim,
                 int64_t row_stride, int64_t first_position, const float* inv_freq,
                 cudaStream_t stream);
cudaError_t Rope(float* x, int64_t num_tokens, int64_t num_heads, int64_t head_dim,
                 int64_t row_stride, int64_t first_position, const float* inv_freq,
                 cudaStream_t stream);

// Per-head RMSNorm (weight w, fp32 [head_dim]) followed by Rope, in one pass: the same bits as
// RmsNorm with num_heads groups and then Rope. For head_dim 64 and 128 (HeadNormRopeFuses);
// others return cudaErrorInvalidValue.
bool HeadNormRopeFuses(int64_t head_dim);
cudaError_t HeadNormRope(bf16* x, const float* w, int64_t num_tokens, int64_t num_heads,
                         int64_t head_dim, int64_t row_stride, float eps, int64_t first_position,
                         const float* inv_freq, cudaStream_t stream);

// HeadNormRope of queries and keys in one launch: x holds each token's num_heads query heads
// and then its num_heads key heads (adjacent columns), normalised with wq and wk. The same
// bits as HeadNormRope on each half.
cudaError_t QkHeadNormRope(bf16* x, const float* wq, const float* wk, int64_t num_tokens,
                           int64_t num_heads, int64_t head_dim, int64_t row_stride, float eps,
                           int64_t first_position, const float* inv_freq, cudaStream_t stream);

}  // namespace tome::kernels::cuda
