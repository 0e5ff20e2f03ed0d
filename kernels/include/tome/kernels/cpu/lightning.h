// Lightning (Simple-GLA) linear attention with a fixed per-head decay, on the CPU.
#pragma once

#include <cstdint>

namespace tome::kernels::cpu {

// Chunk length of the chunked form (as fla and the HF reference use).
inline constexpr int64_t kLightningChunk = 64;

// Runs `num_tokens` tokens through the recurrence, per head h:
//   S ← exp(-slopes[h]) · S + k_t v_tᵀ,   o_t = scale · q_tᵀ S
// using the chunked form (chunk 64, the last chunk of its true length); any split of a
// sequence into calls gives the same result as one call, up to fp32 rounding.
//   q, k, v: [T, H, d] with `row_stride` elements between tokens (heads contiguous);
//   state:   [H, d, d] fp32 (rows = key dim, cols = value dim), read and updated;
//   out:     [T, H, d] with `out_stride` elements between tokens.
void LightningAttention(const float* q, const float* k, const float* v, int64_t num_tokens,
                        int64_t num_heads, int64_t head_dim, int64_t row_stride,
                        const float* slopes, float scale, float* state, float* out,
                        int64_t out_stride);

// Token-by-token recurrence of the same function (the decode form; also the test oracle for
// the chunked form).
void LightningRecurrent(const float* q, const float* k, const float* v, int64_t num_tokens,
                        int64_t num_heads, int64_t head_dim, int64_t row_stride,
                        const float* slopes, float scale, float* state, float* out,
                        int64_t out_stride);

}  // namespace tome::kernels::cpu
