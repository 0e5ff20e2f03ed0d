// Stage-1 group scores on tensor cores. One CTA per 8 (d 128) or 16 (d 64) consecutive
// queries of one KV group, one or two a warp. The summaries are the rows of m16 tiles (A, from the
// shared-memory tile) and each query's heads the columns of two n8 tiles (B, held in registers;
// zero columns past the group's heads), so one A fragment feeds two MMAs a query of the warp. Pass
// 1 walks K2 for every head's log-sum-exp (online, base 2, per lane, merged over the lanes holding
// other summaries at the end); pass 2 walks K1, exponentiates against the LSE and sums a summary's
// heads: four in the lane's registers, then two shuffles. Summary tiles are copied to shared memory
// once per CTA (cp.async, double-buffered) for all 16 queries.
#include "group_scores.cuh"
#include "select_scores_mma.h"

namespace tome::kernels::cuda {
namespace {

using namespace group_scores;

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int64_t kMinTokens = 512;  // 32-64 CTAs a group
// Queries a warp: two share each A fragment where their B fragments fit the registers (d 64);
// d 128 holds one (two would spill).
template <int D>
constexpr int kQueriesPerWarp = D == 64 ? 2 : 1;
template <int D>
constexpr int kQueriesPerCta = kWarps* kQueriesPerWarp<D>;

// B fragments of one query's 16 head slots: n-tile j holds heads 8j..8j+7 (the lane's column
// gi is head 8j + gi), k-step ks dims 16ks.. .
template <int D>
__device__ __forceinline__ void LoadHeadsB(const bf16* q, int heads, bool has_query,
                                           uint32_t (&b)[2][D / 16][2]) {
  const int lane = threadIdx.x % 32, gi = lane / 4, c = lane % 4;
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int head = 8 * j + gi;
    const bool valid = has_query && head < heads;
    const bf16* qh = q + int64_t{valid ? head : 0} * D + 2 * c;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      b[j][ks][0] = valid ? *reinterpret_cast<const uint32_t*>(qh + 16 * ks) : 0u;
      b[j][ks][1] = valid ? *reinterpret_cast<const uint32_t*>(qh + 16 * ks + 8) : 0u;
    }
  }
}

// s[q][j] = summaries 16mt.. of the tile (rows gi, gi + 8) · heads of n-tile j of query q
// (columns 2c, 2c + 1), unscaled.
template <int D>
__device__ __forceinline__ void SummaryScores(const uint32_t (&b)[kQueriesPerWarp<D>][2][D / 16][2],
                                              const bf16* kt, int mt,
                                              float (&s)[kQueriesPerWarp<D>][2][4]) {
  constexpr int kQ = kQueriesPerWarp<D>;
  const int lane = threadIdx.x % 32, mi = lane / 8, mrow = lane % 8;
#pragma unroll
  for (int q = 0; q < kQ; ++q)
#pragma unroll
    for (int j = 0; j < 2; ++j) s[q][j][0] = s[q][j][1] = s[q][j][2] = s[q][j][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    uint32_t a[4];
    LdMatrixX4(a, kt + Swizzled<D>(16 * mt + (mi & 1) * 8 + mrow, 2 * ks + (mi >> 1)));
#pragma unroll
    for (int q = 0; q < kQ; ++q)
#pragma unroll
      for (int j = 0; j < 2; ++j) MmaBf16(s[q][j], a, b[q][j][ks][0], b[q][j][ks][1]);
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads, 2) GroupScoresKernel(GroupScoresArgs a) {
  constexpr int kQ = kQueriesPerWarp<D>, kQueries = kQueriesPerCta<D>;
  __shared__ __align__(128) bf16 buf[2 * kTile * D];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gi = lane / 4, c = lane % 4;
  const int64_t t_first = int64_t{blockIdx.x} * kQueries;
  const int64_t t_last = min(a.num_tokens - 1, t_first + kQueries - 1);
  const int64_t ks1 = a.kernel_size, st1 = a.kernel_stride;
  const int64_t p_last = a.first_position + t_last;  // the CTA walks what its last query sees
  const int64_t n1c = min(a.n1, Windows(p_last + 1, ks1, st1));
  const int64_t n2c = min(a.n2, Windows(p_last + 1, 4 * ks1, 4 * st1));
  int64_t t[kQ], n1v[kQ], n2v[kQ];
  uint32_t b[kQ][2][D / 16][2];
#pragma unroll
  for (int q = 0; q < kQ; ++q) {
    t[q] = t_first + warp * kQ + q;
    const bool has_query = t[q] < a.num_tokens;
    const int64_t p = a.first_position + t[q];
    n1v[q] = has_query ? Windows(p + 1, ks1, st1) : 0;
    n2v[q] = has_query ? Windows(p + 1, 4 * ks1, 4 * st1) : 0;
    LoadHeadsB<D>(a.q + (has_query ? t[q] : 0) * a.q_stride, a.heads, has_query, b[q]);
  }
  int64_t n1_most = 0, n2_most = 0;  // the warp's most visible windows
#pragma unroll
  for (int q = 0; q < kQ; ++q) n1_most = max(n1_most, n1v[q]), n2_most = max(n2_most, n2v[q]);
  const float sl = a.scale * kLog2e;
  const bf16* k1 = a.k1;
  const bf16* k2 = a.k2;
  auto k1_row = [k1](int64_t i) { return k1 + i * D; };
  auto k2_row = [k2](int64_t i) { return k2 + i * D; };

  // Pass 1: LSE2 (base 2) of the lane's heads 8j + 2c + e (slot 2j + e) over the visible K2
  // windows among its summaries, then over all summaries (the lanes of other gi).
  float m[kQ][4], l[kQ][4];
#pragma unroll
  for (int q = 0; q < kQ; ++q)
#pragma unroll
    for (int h = 0; h < 4; ++h) m[q][h] = -INFINITY, l[q][h] = 0.0f;
  Walk<D, kThreads>(k2_row, n2c, 0, TilesOf(n2c), buf, [&](const bf16* kt, int64_t j0) {
#pragma unroll
    for (int mt = 0; mt < kTile / 16; ++mt) {
      if (j0 + 16 * mt >= n2_most) continue;  // warp-uniform (MMAs need every lane)
      const int64_t r0 = j0 + 16 * mt + gi, r1 = r0 + 8;
      float s[kQ][2][4];
      SummaryScores<D>(b, kt, mt, s);
#pragma unroll
      for (int q = 0; q < kQ; ++q) {
#pragma unroll
        for (int h = 0; h < 4; ++h) {
          const int j = h / 2, e = h % 2;
          const float v0 = r0 < n2v[q] ? s[q][j][e] * sl : -INFINITY;
          const float v1 = r1 < n2v[q] ? s[q][j][2 + e] * sl : -INFINITY;
          const float mx = fmaxf(v0, v1);
          if (mx > m[q][h]) {
            l[q][h] *= exp2f(m[q][h] - mx);
            m[q][h] = mx;
          }
          if (m[q][h] != -INFINITY) l[q][h] += exp2f(v0 - m[q][h]) + exp2f(v1 - m[q][h]);
        }
      }
    }
  });
  float lse[kQ][4];
#pragma unroll
  for (int q = 0; q < kQ; ++q) {
#pragma unroll
    for (int h = 0; h < 4; ++h) {
#pragma unroll
      for (int off = 4; off < 32; off <<= 1) {
        MergeLse(m[q][h], l[q][h], __shfl_xor_sync(0xffffffffu, m[q][h], off),
                 __shfl_xor_sync(0xffffffffu, l[q][h], off));
      }
      const int head = 8 * (h / 2) + 2 * c + h % 2;
      // Head slots past the group's heads add nothing (exp2(x − inf) = 0).
      lse[q][h] = head < a.heads ? m[q][h] + log2f(l[q][h]) : INFINITY;
    }
  }

  // Pass 2: Sc over the visible K1 windows: each summary's heads, four in this lane and the
  // rest in the three lanes of the same gi.
  Walk<D, kThreads>(k1_row, n1c, 0, TilesOf(n1c), buf, [&](const bf16* kt, int64_t j0) {
#pragma unroll
    for (int mt = 0; mt < kTile / 16; ++mt) {
      if (j0 + 16 * mt >= n1_most) continue;  // warp-uniform (MMAs need every lane)
      const int64_t r0 = j0 + 16 * mt + gi;
      float s[kQ][2][4];
      SummaryScores<D>(b, kt, mt, s);
#pragma unroll
      for (int q = 0; q < kQ; ++q) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {  // rows gi, gi + 8
          float sum = 0.0f;
#pragma unroll
          for (int h = 0; h < 4; ++h) {
            sum += exp2f(s[q][h / 2][2 * half + h % 2] * sl - lse[q][h]);
          }
          sum += __shfl_xor_sync(0xffffffffu, sum, 1);
          sum += __shfl_xor_sync(0xffffffffu, sum, 2);
          const int64_t r = r0 + 8 * half;
          if (c == half && r < n1v[q]) {
            a.out[t[q] * a.ld + r] = __float2bfloat16_rn(n2v[q] > 0 ? sum : INFINITY);
          }
        }
      }
    }
  });
}

}  // namespace

bool GroupScoresOnTensorCores(int64_t num_tokens, int64_t heads_per_group, int64_t head_dim) {
  return num_tokens >= kMinTokens && heads_per_group >= 8 && heads_per_group <= 16 &&
         (head_dim == 64 || head_dim == 128);
}

cudaError_t GroupScores(const GroupScoresArgs& a, cudaStream_t stream) {
  if (a.num_tokens == 0) return cudaSuccess;
  // Any tile size (the caller routes whole calls by GroupScoresOnTensorCores; a call's last
  // tile may be small).
  if (a.heads < 1 || a.heads > 16 || (a.head_dim != 64 && a.head_dim != 128) ||
      a.q_stride % 2 != 0 || a.ld % 2 != 0 || reinterpret_cast<uintptr_t>(a.out) % 4 != 0 ||
      reinterpret_cast<uintptr_t>(a.q) % 4 != 0 || reinterpret_cast<uintptr_t>(a.k1) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(a.k2) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  if (a.head_dim == 64) {
    const unsigned grid = static_cast<unsigned>(CeilDiv(a.num_tokens, kQueriesPerCta<64>));
    GroupScoresKernel<64><<<grid, kThreads, 0, stream>>>(a);
  } else {
    const unsigned grid = static_cast<unsigned>(CeilDiv(a.num_tokens, kQueriesPerCta<128>));
    GroupScoresKernel<128><<<grid, kThreads, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

}  // namespace tome::kernels::cuda
