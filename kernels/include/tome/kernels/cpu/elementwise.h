// Element-wise CPU ops over [rows, cols] matrices with row strides (in elements), so they
// can work on column slices of a fused projection output.
#pragma once

#include <cstdint>

namespace tome::kernels::cpu {

// out[r, c] = silu(gate[r, c]) · up[r, c]  (SwiGLU).
void SiluMul(const float* gate, const float* up, int64_t in_stride, float* out,
             int64_t out_stride, int64_t rows, int64_t cols);

// x[r, c] *= sigmoid(z[r, c])  (output gates of both mixer types).
void SigmoidMul(float* x, int64_t x_stride, const float* z, int64_t z_stride, int64_t rows,
                int64_t cols);

// h[i] += alpha · x[i]  (µP-scaled residual), contiguous.
void AddScaled(float* h, const float* x, float alpha, int64_t n);

// x[i] *= alpha, contiguous.
void Scale(float* x, float alpha, int64_t n);

// out[t, :] = scale · table[ids[t], :] for t < num_tokens.
void EmbeddingLookup(const float* table, const int32_t* ids, int64_t num_tokens, int64_t dim,
                     float scale, float* out);

}  // namespace tome::kernels::cpu
