// Stage-1 group scores on tensor cores. One CTA per 8 consecutive queries of one KV group,
// warp w for query w: its heads are the rows of m16 tiles (zero rows past the group's heads),
// 64 summaries a tile are the columns. Pass 1 walks K2 for every head's log-sum-exp (online,
// base 2, per-lane partials merged at the end); pass 2 walks K1, exponentiates against the
// LSE and sums the heads by shuffles, writing the bf16-rounded group score. Summary tiles are
// copied to shared memory once per CTA (cp.async, double-buffered) for all 8 warps.
#include "common.cuh"
#include "mma.cuh"
#include "select_scores_mma.h"

namespace tome::kernels::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kTile = 64;  // summaries per tile
constexpr int64_t kMinTokens = 512;  // 64 CTAs a group

__device__ __forceinline__ int64_t Windows(int64_t n, int64_t w, int64_t s) {
  return n < w ? 0 : (n - w) / s + 1;
}

template <int D>
__device__ __forceinline__ int Swz(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

// Copies rows [j0, j0 + kTile) of the dense [n, D] matrix m (zeros past n) into dst.
template <int D>
__device__ __forceinline__ void LoadTile(const bf16* m, int64_t n, int64_t j0, bf16* dst) {
  for (int e = threadIdx.x; e < kTile * (D / 8); e += kThreads) {
    const int row = e / (D / 8), chunk = e % (D / 8);
    const bool valid = j0 + row < n;
    CpAsync16(dst + Swz<D>(row, chunk), m + (valid ? (j0 + row) * D + chunk * 8 : 0), valid);
  }
  CpAsyncCommit();
}

// s = Q·K_tileᵀ for this warp's 16 rows and the tile's 64 columns (8 n-tiles).
template <int D>
__device__ __forceinline__ void Scores(const uint32_t (&qf)[D / 16][4], const bf16* kt, int lane,
                                       float (&s)[8][4]) {
  const int mi = lane / 8, mrow = lane % 8;
#pragma unroll
  for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
    for (int jp = 0; jp < 4; ++jp) {
      uint32_t r[4];
      LdMatrixX4(r, kt + Swz<D>(16 * jp + (mi >> 1) * 8 + mrow, 2 * ks + (mi & 1)));
      MmaBf16(s[2 * jp], qf[ks], r[0], r[1]);
      MmaBf16(s[2 * jp + 1], qf[ks], r[2], r[3]);
    }
  }
}

// Walks tiles [0, n) of m (rows beyond `n` zero), calling body(tile in shared memory, j0).
template <int D, typename Body>
__device__ __forceinline__ void Walk(const bf16* m, int64_t n, bf16* buf, Body&& body) {
  const int64_t tiles = (n + kTile - 1) / kTile;
  if (tiles > 0) LoadTile<D>(m, n, 0, buf);
  for (int64_t i = 0; i < tiles; ++i) {
    if (i + 1 < tiles) {
      LoadTile<D>(m, n, (i + 1) * kTile, buf + ((i + 1) & 1) * kTile * D);
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    body(buf + (i & 1) * kTile * D, i * kTile);
    __syncthreads();  // the next copy overwrites this buffer
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) GroupScoresKernel(GroupScoresArgs a) {
  __shared__ __align__(128) bf16 buf[2 * kTile * D];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gi = lane / 4, c = lane % 4;
  const int64_t t = int64_t{blockIdx.x} * kWarps + warp;
  const int64_t t_last = min(a.num_tokens - 1, int64_t{blockIdx.x} * kWarps + kWarps - 1);
  const bool has_query = t < a.num_tokens;
  const int64_t p = a.first_position + t;
  const int64_t ks1 = a.kernel_size, st1 = a.kernel_stride;
  const int64_t n1v = has_query ? Windows(p + 1, ks1, st1) : 0;
  const int64_t n2v = has_query ? Windows(p + 1, 4 * ks1, 4 * st1) : 0;
  const int64_t p_last = a.first_position + t_last;  // the CTA walks what its last query sees
  const int64_t n1c = min(a.n1, Windows(p_last + 1, ks1, st1));
  const int64_t n2c = min(a.n2, Windows(p_last + 1, 4 * ks1, 4 * st1));
  const bool row0 = has_query && gi < a.heads, row1 = has_query && gi + 8 < a.heads;

  uint32_t qf[D / 16][4];
  {
    const bf16* q0 = a.q + t * a.q_stride + int64_t{gi} * D + 2 * c;
    const bf16* q1 = q0 + 8 * D;
#pragma unroll
    for (int s = 0; s < D / 16; ++s) {
      qf[s][0] = row0 ? *reinterpret_cast<const uint32_t*>(q0 + 16 * s) : 0u;
      qf[s][1] = row1 ? *reinterpret_cast<const uint32_t*>(q1 + 16 * s) : 0u;
      qf[s][2] = row0 ? *reinterpret_cast<const uint32_t*>(q0 + 16 * s + 8) : 0u;
      qf[s][3] = row1 ? *reinterpret_cast<const uint32_t*>(q1 + 16 * s + 8) : 0u;
    }
  }
  const float sl = a.scale * 1.4426950408889634f;  // scores in base 2

  // Pass 1: LSE2 (base 2) of rows gi and gi + 8 over the visible K2 windows.
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  Walk<D>(a.k2, n2c, buf, [&](const bf16* kt, int64_t j0) {
    if (j0 >= n2v) return;
    float s[8][4];
    Scores<D>(qf, kt, lane, s);
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] = j0 + 8 * j + 2 * c + (e & 1) < n2v ? s[j][e] * sl : -INFINITY;
      }
      mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
      mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
    }
    const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
    if (n0 != -INFINITY) {  // this lane has a visible column in the tile (then so does n1)
      float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        sum0 += exp2f(s[j][0] - n0) + exp2f(s[j][1] - n0);
        sum1 += exp2f(s[j][2] - n1) + exp2f(s[j][3] - n1);
      }
      l0 = l0 * exp2f(m0 - n0) + sum0;
      l1 = l1 * exp2f(m1 - n1) + sum1;
      m0 = n0, m1 = n1;
    }
  });
#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {  // merge the four lanes of each row
    const float mo0 = __shfl_xor_sync(0xffffffffu, m0, off);
    const float lo0 = __shfl_xor_sync(0xffffffffu, l0, off);
    const float mo1 = __shfl_xor_sync(0xffffffffu, m1, off);
    const float lo1 = __shfl_xor_sync(0xffffffffu, l1, off);
    const float x0 = fmaxf(m0, mo0), x1 = fmaxf(m1, mo1);
    if (x0 != -INFINITY) {  // then x1 is finite too (both rows see the same columns)
      l0 = (m0 == -INFINITY ? 0.0f : l0 * exp2f(m0 - x0)) +
           (mo0 == -INFINITY ? 0.0f : lo0 * exp2f(mo0 - x0));
      l1 = (m1 == -INFINITY ? 0.0f : l1 * exp2f(m1 - x1)) +
           (mo1 == -INFINITY ? 0.0f : lo1 * exp2f(mo1 - x1));
    }
    m0 = x0, m1 = x1;
  }
  const float lse0 = m0 + log2f(l0), lse1 = m1 + log2f(l1);

  // Pass 2: Sc over the visible K1 windows, summed over the heads (rows) of the m16 tile.
  bf16* out = a.out + t * a.ld;
  Walk<D>(a.k1, n1c, buf, [&](const bf16* kt, int64_t j0) {
    if (j0 >= n1v) return;
    float s[8][4];
    Scores<D>(qf, kt, lane, s);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float sum_a = (row0 ? exp2f(s[j][0] * sl - lse0) : 0.0f) +
                    (row1 ? exp2f(s[j][2] * sl - lse1) : 0.0f);
      float sum_b = (row0 ? exp2f(s[j][1] * sl - lse0) : 0.0f) +
                    (row1 ? exp2f(s[j][3] * sl - lse1) : 0.0f);
#pragma unroll
      for (int off = 4; off < 32; off <<= 1) {
        sum_a += __shfl_xor_sync(0xffffffffu, sum_a, off);
        sum_b += __shfl_xor_sync(0xffffffffu, sum_b, off);
      }
      const int64_t col = j0 + 8 * j + 2 * c;  // even, and rows are 8 apart: 4-byte aligned
      if (gi == 0) {
        if (n2v == 0) sum_a = sum_b = INFINITY;
        if (col + 1 < n1v) {
          *reinterpret_cast<uint32_t*>(out + col) = PackBf16(sum_a, sum_b);
        } else if (col < n1v) {
          out[col] = __float2bfloat16_rn(sum_a);
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
  const unsigned grid = static_cast<unsigned>(CeilDiv(a.num_tokens, kWarps));
  if (a.head_dim == 64) {
    GroupScoresKernel<64><<<grid, kThreads, 0, stream>>>(a);
  } else {
    GroupScoresKernel<128><<<grid, kThreads, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

}  // namespace tome::kernels::cuda
