// Lightning attention: one CTA per (head, slice of value columns) runs the chunked form over
// all tokens of the call, holding its slice of the fp32 state in shared memory. Splitting the
// value dimension is exact (state columns are independent) and gives H · d/32 CTAs; each
// recomputes the chunk's decay-masked score matrix. SIMT fp32 throughout: used for short calls
// (a few tokens); prefill-sized calls go chunk-parallel to tensor cores (lightning_mma.cu),
// calls of one token (decode steps) to lightning_decode.cu.
#include "common.cuh"
#include "lightning_decode.h"
#include "lightning_mma.h"
#include "tome/kernels/cuda/lightning.h"

namespace tome::kernels::cuda {
namespace {

constexpr int kChunk = 64;
constexpr int kThreads = 256;
constexpr int kLd = kChunk + 1;  // transposed q/k rows, padded against bank conflicts

template <int D>
constexpr int ValueSlice() { return D < 32 ? D : 32; }

template <int D>
constexpr size_t SmemFloats() {
  constexpr int VS = ValueSlice<D>();
  return 2 * D * kLd + kChunk * VS + D * VS + kChunk * (kChunk + 1) + (kChunk + 1);
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    LightningKernel(const bf16* q, const bf16* k, const bf16* v, int64_t num_tokens,
                    int64_t row_stride, const float* slopes, float scale, float* state,
                    bf16* out, int64_t out_stride) {
  WaitForPriorKernels();
  constexpr int VS = ValueSlice<D>();
  extern __shared__ float smem[];
  float* qt = smem;                      // [D][kLd]: q of the chunk, transposed
  float* kt = qt + D * kLd;              // [D][kLd]
  float* vs = kt + D * kLd;              // [kChunk][VS]: this CTA's value columns
  float* s = vs + kChunk * VS;           // [D][VS]: state slice (rows = key dim)
  float* a = s + D * VS;                 // [kChunk][kChunk + 1]: decay-masked scores
  float* decay = a + kChunk * (kChunk + 1);  // [kChunk + 1]: γ^n
  const int h = blockIdx.x, col0 = blockIdx.y * VS, tid = threadIdx.x;

  // γ^n = exp(-λ n) evaluated directly (in double, as the CPU kernel), underflowing to 0.
  for (int n = tid; n <= kChunk; n += kThreads) {
    decay[n] = static_cast<float>(exp(-static_cast<double>(slopes[h]) * n));
  }
  float* state_h = state + static_cast<int64_t>(h) * D * D;
  for (int e = tid; e < D * VS; e += kThreads) s[e] = state_h[(e / VS) * D + col0 + e % VS];
  __syncthreads();

  for (int64_t c0 = 0; c0 < num_tokens; c0 += kChunk) {
    const int c = static_cast<int>(num_tokens - c0 < kChunk ? num_tokens - c0 : kChunk);
    for (int e = tid; e < kChunk * D; e += kThreads) {
      const int i = e / D, r = e % D;
      float qv = 0.0f, kv = 0.0f;
      if (i < c) {
        const int64_t off = (c0 + i) * row_stride + int64_t(h) * D + r;
        qv = ToFloat(q[off]);
        kv = ToFloat(k[off]);
      }
      qt[r * kLd + i] = qv;
      kt[r * kLd + i] = kv;
    }
    for (int e = tid; e < kChunk * VS; e += kThreads) {
      const int i = e / VS, col = e % VS;
      vs[e] = i < c ? ToFloat(v[(c0 + i) * row_stride + int64_t(h) * D + col0 + col]) : 0.0f;
    }
    __syncthreads();
    // a[i][j] = scale γ^(i-j) q_i·k_j for j <= i < c.
    for (int e = tid; e < kChunk * kChunk; e += kThreads) {
      const int i = e / kChunk, j = e % kChunk;
      float val = 0.0f;
      if (i < c && j <= i) {
        float dot = 0.0f;
#pragma unroll 8
        for (int r = 0; r < D; ++r) dot += qt[r * kLd + i] * kt[r * kLd + j];
        val = scale * decay[i - j] * dot;
      }
      a[i * (kChunk + 1) + j] = val;
    }
    __syncthreads();
    // o_i = scale γ^(i+1) q_iᵀ S_prev + Σ_{j<=i} a[i][j] v_j.
    for (int e = tid; e < c * VS; e += kThreads) {
      const int i = e / VS, col = e % VS;
      float inter = 0.0f;
#pragma unroll 8
      for (int r = 0; r < D; ++r) inter += qt[r * kLd + i] * s[r * VS + col];
      float acc = scale * decay[i + 1] * inter;
      for (int j = 0; j <= i; ++j) acc += a[i * (kChunk + 1) + j] * vs[j * VS + col];
      out[(c0 + i) * out_stride + int64_t(h) * D + col0 + col] = FromFloat<bf16>(acc);
    }
    __syncthreads();
    // S_new = γ^c S_prev + Σ_j γ^(c-1-j) k_j v_jᵀ.
    for (int e = tid; e < D * VS; e += kThreads) {
      const int r = e / VS, col = e % VS;
      float acc = decay[c] * s[e];
      for (int j = 0; j < c; ++j) acc += (decay[c - 1 - j] * kt[r * kLd + j]) * vs[j * VS + col];
      s[e] = acc;
    }
    __syncthreads();
  }
  for (int e = tid; e < D * VS; e += kThreads) state_h[(e / VS) * D + col0 + e % VS] = s[e];
}

template <int D>
cudaError_t Launch(const bf16* q, const bf16* k, const bf16* v, int64_t num_tokens,
                   int64_t num_heads, int64_t row_stride, const float* slopes, float scale,
                   float* state, bf16* out, int64_t out_stride, cudaStream_t stream) {
  constexpr size_t kSmem = SmemFloats<D>() * sizeof(float);
  if (OptInDynamicSmem<LightningKernel<D>>() < static_cast<int>(kSmem)) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid(static_cast<unsigned>(num_heads), D / ValueSlice<D>());
  return LaunchAfterPrior(LightningKernel<D>, grid, kThreads, kSmem, stream, q, k, v, num_tokens,
                          row_stride, slopes, scale, state, out, out_stride);
}

}  // namespace

size_t LightningScratchBytes(int64_t num_tokens, int64_t num_heads, int64_t head_dim,
                             int64_t row_stride, const bf16* q, const bf16* k, const bf16* v) {
  return LightningUsesTensorCores(num_tokens, head_dim, row_stride, q, k, v)
             ? LightningMmaScratchBytes(num_tokens, num_heads, head_dim)
             : 0;
}

cudaError_t Lightning(const bf16* q, const bf16* k, const bf16* v, int64_t num_tokens,
                      int64_t num_heads, int64_t head_dim, int64_t row_stride,
                      const float* slopes, float scale, float* state, bf16* out,
                      int64_t out_stride, void* scratch, size_t scratch_bytes,
                      cudaStream_t stream) {
  if (num_tokens == 0 || num_heads == 0) return cudaSuccess;
  if (num_tokens == 1) {
    return LightningDecode(q, k, v, num_heads, head_dim, slopes, scale, state, out, stream);
  }
  if (LightningUsesTensorCores(num_tokens, head_dim, row_stride, q, k, v)) {
    return LightningMma(q, k, v, num_tokens, num_heads, head_dim, row_stride, slopes, scale,
                        state, out, out_stride, scratch, scratch_bytes, stream);
  }
  switch (head_dim) {
    case 16:
      return Launch<16>(q, k, v, num_tokens, num_heads, row_stride, slopes, scale, state, out,
                        out_stride, stream);
    case 32:
      return Launch<32>(q, k, v, num_tokens, num_heads, row_stride, slopes, scale, state, out,
                        out_stride, stream);
    case 64:
      return Launch<64>(q, k, v, num_tokens, num_heads, row_stride, slopes, scale, state, out,
                        out_stride, stream);
    case 128:
      return Launch<128>(q, k, v, num_tokens, num_heads, row_stride, slopes, scale, state, out,
                         out_stride, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace tome::kernels::cuda
