#include "tome/kernels/cpu/lightning.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "vec_math.h"

namespace tome::kernels::cpu {

void LightningAttention(const float* q, const float* k, const float* v, int64_t num_tokens,
                        int64_t num_heads, int64_t head_dim, int64_t row_stride,
                        const float* slopes, float scale, float* state, float* out,
                        int64_t out_stride) {
  const int64_t d = head_dim;
  constexpr int64_t C = kLightningChunk;
#pragma omp parallel for schedule(dynamic) if (num_tokens * num_heads >= 64)
  for (int64_t h = 0; h < num_heads; ++h) {
    // decay[n] = γ^n = exp(-λ n), evaluated directly so it underflows cleanly to 0.
    float decay[C + 1];
    for (int64_t n = 0; n <= C; ++n) {
      decay[n] = static_cast<float>(std::exp(-static_cast<double>(slopes[h]) * n));
    }
    float* S = state + h * d * d;
    thread_local std::vector<float> scores(C * C);
    for (int64_t c0 = 0; c0 < num_tokens; c0 += C) {
      const int64_t c = std::min(C, num_tokens - c0);
      auto q_row = [&](int64_t i) { return q + (c0 + i) * row_stride + h * d; };
      auto k_row = [&](int64_t i) { return k + (c0 + i) * row_stride + h * d; };
      auto v_row = [&](int64_t i) { return v + (c0 + i) * row_stride + h * d; };
      // Intra-chunk decay-masked scores A[i][j] = scale γ^(i-j) q_i·k_j, j <= i.
      for (int64_t i = 0; i < c; ++i) {
        for (int64_t j = 0; j <= i; ++j) {
          scores[i * C + j] = scale * decay[i - j] * Dot(q_row(i), k_row(j), d);
        }
      }
      for (int64_t i = 0; i < c; ++i) {
        float* o = out + (c0 + i) * out_stride + h * d;
        // Inter-chunk: scale γ^(i+1) q_iᵀ S_prev.
        std::fill(o, o + d, 0.0f);
        const float* qi = q_row(i);
        const float w_inter = scale * decay[i + 1];
        for (int64_t r = 0; r < d; ++r) Axpy(w_inter * qi[r], S + r * d, o, d);
        for (int64_t j = 0; j <= i; ++j) Axpy(scores[i * C + j], v_row(j), o, d);
      }
      // S_new = γ^c S_prev + Σ_j γ^(c-1-j) k_j v_jᵀ.
      const float chunk_decay = decay[c];
#pragma omp simd
      for (int64_t e = 0; e < d * d; ++e) S[e] *= chunk_decay;
      for (int64_t j = 0; j < c; ++j) {
        const float* kj = k_row(j);
        const float* vj = v_row(j);
        const float w = decay[c - 1 - j];
        for (int64_t r = 0; r < d; ++r) Axpy(w * kj[r], vj, S + r * d, d);
      }
    }
  }
}

void LightningRecurrent(const float* q, const float* k, const float* v, int64_t num_tokens,
                        int64_t num_heads, int64_t head_dim, int64_t row_stride,
                        const float* slopes, float scale, float* state, float* out,
                        int64_t out_stride) {
  const int64_t d = head_dim;
  for (int64_t h = 0; h < num_heads; ++h) {
    const float gamma = static_cast<float>(std::exp(-static_cast<double>(slopes[h])));
    float* S = state + h * d * d;
    for (int64_t t = 0; t < num_tokens; ++t) {
      const float* qt = q + t * row_stride + h * d;
      const float* kt = k + t * row_stride + h * d;
      const float* vt = v + t * row_stride + h * d;
      for (int64_t r = 0; r < d; ++r) {
        float* Sr = S + r * d;
#pragma omp simd
        for (int64_t col = 0; col < d; ++col) Sr[col] = gamma * Sr[col] + kt[r] * vt[col];
      }
      float* o = out + t * out_stride + h * d;
      std::fill(o, o + d, 0.0f);
      for (int64_t r = 0; r < d; ++r) Axpy(scale * qt[r], S + r * d, o, d);
    }
  }
}

}  // namespace tome::kernels::cpu
