#pragma once

#include <cstddef>

#include "tome/kernels/cuda/types.h"

namespace tome::kernels::cuda {

// Lightning attention, the function of kernels::cpu::LightningAttention: per head h,
//   S ← exp(-slopes[h]) · S + k_t v_tᵀ,   o_t = scale · q_tᵀ S
// in the chunked form (chunk 64 from the first token of the call, the last chunk of its
// true length), fp32 state and arithmetic, decay powers exp(-λn) evaluated directly.
//   q, k, v: bf16 [T, H, d], `row_stride` elements between tokens;
//   slopes:  fp32 [H] (device);  state: fp32 [H, d, d] (device, read and updated);
//   out:     bf16 [T, H, d], `out_stride` elements between tokens.
// head_dim must be 16, 32, 64 or 128 (cudaErrorInvalidValue otherwise).
// Prefill-sized calls (head_dim 64 or 128, 16-byte aligned rows) run chunk-parallel on tensor
// cores and need LightningScratchBytes(...) of device scratch (one state per chunk and head);
// others run one CTA per (head, value slice) over the chunks in order and need none; a call of
// one token (a decode step) reads and writes each state element once.
size_t LightningScratchBytes(int64_t num_tokens, int64_t num_heads, int64_t head_dim,
                             int64_t row_stride, const bf16* q, const bf16* k, const bf16* v);
cudaError_t Lightning(const bf16* q, const bf16* k, const bf16* v, int64_t num_tokens,
                      int64_t num_heads, int64_t head_dim, int64_t row_stride,
                      const float* slopes, float scale, float* state, bf16* out,
                      int64_t out_stride, void* scratch, size_t scratch_bytes,
                      cudaStream_t stream);

}  // namespace tome::kernels::cuda
