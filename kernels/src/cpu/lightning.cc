#include "tome/kernels/cpu/lightning.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "tome/kernels/cpu/gemm.h"
#include "vec_math.h"

namespace tome::kernels::cpu {

namespace {

// One head's view of a chunk of c tokens starting at token c0.
struct Chunk {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  int64_t c, d, row_stride, out_stride;
  const float* decay;  // decay[n] = γ^n, n <= kLightningChunk
  float scale;
};

// The chunk with vector loops (short chunks: decode and tails).
void ChunkDirect(const Chunk& x, float* S, float* scores) {
  const int64_t c = x.c, d = x.d;
  constexpr int64_t C = kLightningChunk;
  auto q_row = [&](int64_t i) { return x.q + i * x.row_stride; };
  auto k_row = [&](int64_t i) { return x.k + i * x.row_stride; };
  auto v_row = [&](int64_t i) { return x.v + i * x.row_stride; };
  // Intra-chunk decay-masked scores A[i][j] = scale γ^(i-j) q_i·k_j, j <= i.
  for (int64_t i = 0; i < c; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      scores[i * C + j] = x.scale * x.decay[i - j] * Dot(q_row(i), k_row(j), d);
    }
  }
  for (int64_t i = 0; i < c; ++i) {
    float* o = x.out + i * x.out_stride;
    // Inter-chunk: scale γ^(i+1) q_iᵀ S_prev.
    std::fill(o, o + d, 0.0f);
    const float* qi = q_row(i);
    const float w_inter = x.scale * x.decay[i + 1];
    for (int64_t r = 0; r < d; ++r) Axpy(w_inter * qi[r], S + r * d, o, d);
    for (int64_t j = 0; j <= i; ++j) Axpy(scores[i * C + j], v_row(j), o, d);
  }
  // S_new = γ^c S_prev + Σ_j γ^(c-1-j) k_j v_jᵀ.
  const float chunk_decay = x.decay[c];
#pragma omp simd
  for (int64_t e = 0; e < d * d; ++e) S[e] *= chunk_decay;
  for (int64_t j = 0; j < c; ++j) {
    const float* kj = k_row(j);
    const float* vj = v_row(j);
    const float w = x.decay[c - 1 - j];
    for (int64_t r = 0; r < d; ++r) Axpy(w * kj[r], vj, S + r * d, d);
  }
}

// The same chunk as four GEMMs (called inside the parallel region: BLAS runs single-threaded).
void ChunkGemm(const Chunk& x, float* S, float* scores, float* tmp) {
  const int64_t c = x.c, d = x.d;
  constexpr int64_t C = kLightningChunk;
  // A = Q Kᵀ, then masked and decayed in place: A[i][j] = scale γ^(i-j) q_i·k_j, j <= i.
  MatMulTransB(x.q, x.k, scores, c, c, d, 0.0f, x.row_stride, x.row_stride, C);
  for (int64_t i = 0; i < c; ++i) {
    float* a = scores + i * C;
    for (int64_t j = 0; j <= i; ++j) a[j] = x.scale * x.decay[i - j] * a[j];
    std::fill(a + i + 1, a + c, 0.0f);
  }
  // O = (scale γ^(i+1) q_i)ᵀ S_prev + A V.
  for (int64_t i = 0; i < c; ++i) {
    const float w_inter = x.scale * x.decay[i + 1];
    const float* qi = x.q + i * x.row_stride;
    for (int64_t r = 0; r < d; ++r) tmp[i * d + r] = w_inter * qi[r];
  }
  MatMul(tmp, S, x.out, c, d, d, 0.0f, d, d, x.out_stride);
  MatMul(scores, x.v, x.out, c, d, c, 1.0f, C, x.row_stride, x.out_stride);
  // S_new = γ^c S_prev + (γ^(c-1-j) k_j)ᵀ V, with the weighted keys transposed into tmp.
  for (int64_t j = 0; j < c; ++j) {
    const float w = x.decay[c - 1 - j];
    const float* kj = x.k + j * x.row_stride;
    for (int64_t r = 0; r < d; ++r) tmp[r * C + j] = w * kj[r];
  }
  MatMul(tmp, x.v, S, d, d, c, x.decay[c], C, x.row_stride, d);
}

// Chunks shorter than this run with vector loops; a GEMM call costs more than they do.
constexpr int64_t kGemmChunk = 16;

}  // namespace

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
    thread_local std::vector<float> scores, tmp;
    scores.resize(C * C);
    tmp.resize(C * std::max(d, C));
    for (int64_t c0 = 0; c0 < num_tokens; c0 += C) {
      const Chunk x{q + c0 * row_stride + h * d, k + c0 * row_stride + h * d,
                    v + c0 * row_stride + h * d, out + c0 * out_stride + h * d,
                    std::min(C, num_tokens - c0), d, row_stride, out_stride, decay, scale};
      if (x.c < kGemmChunk) {
        ChunkDirect(x, S, scores.data());
      } else {
        ChunkGemm(x, S, scores.data(), tmp.data());
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
