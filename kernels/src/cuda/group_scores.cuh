// Stage-1 group-score building blocks on tensor cores (internal). Shared by GroupScores
// (prefill: summaries as MMA rows) and the few-query path (decode: heads as MMA rows): the
// 64-summary tiles copied to shared memory (double-buffered walk) and base-2 log-sum-exp
// merging. For the few-query path: a warp holds one query's heads as the rows of m16 tiles
// (zero rows past the group's heads) against a tile's 64 summaries as the columns.
#pragma once

#include "common.cuh"
#include "mma.cuh"

namespace tome::kernels::cuda::group_scores {

constexpr int kTile = 64;                      // summaries per tile
constexpr float kLog2e = 1.4426950408889634f;  // scores are handled in base 2

__device__ __forceinline__ int64_t Windows(int64_t n, int64_t w, int64_t s) {
  return n < w ? 0 : (n - w) / s + 1;
}

// Tiles holding n summaries.
__device__ __forceinline__ int64_t TilesOf(int64_t n) { return (n + kTile - 1) / kTile; }

// Copies rows [j0, j0 + kTile) (row(i): a row's first element; zeros past n) into dst, by
// all kThreads threads of the CTA.
template <int D, int kThreads, typename RowFn>
__device__ __forceinline__ void LoadTile(RowFn row, int64_t n, int64_t j0, bf16* dst) {
  for (int e = threadIdx.x; e < kTile * (D / 8); e += kThreads) {
    const int r = e / (D / 8), chunk = e % (D / 8);
    const bool valid = j0 + r < n;
    CpAsync16(dst + Swizzled<D>(r, chunk), row(valid ? j0 + r : 0) + chunk * 8, valid);
  }
  CpAsyncCommit();
}

// The same for the rows of a paged matrix. A tile inside one page (summary pages hold a
// multiple of kTile rows) needs one page lookup instead of one a row: the lookup's 64-bit
// division per copied vector was most of the few-query scoring kernels' instructions.
template <int D, int kThreads>
__device__ __forceinline__ void LoadTile(const DevicePagedRows& m, int64_t n, int64_t j0,
                                         bf16* dst) {
  const int64_t in_page = j0 % m.rows_per_page;
  if (in_page + kTile > m.rows_per_page) {
    return LoadTile<D, kThreads>([&m](int64_t i) { return PagedRow(m, i); }, n, j0, dst);
  }
  const bf16* base = m.pages[j0 / m.rows_per_page] + in_page * m.width;
  for (int e = threadIdx.x; e < kTile * (D / 8); e += kThreads) {
    const int r = e / (D / 8), chunk = e % (D / 8);
    CpAsync16(dst + Swizzled<D>(r, chunk), base + r * m.width + chunk * 8, j0 + r < n);
  }
  CpAsyncCommit();
}

// Walks tiles [tile_begin, tile_end) of rows [0, n) (rows past n zero), double-buffered in
// buf (2·kTile·D), calling body(tile in shared memory, j0) with every thread of the CTA
// (kThreads).
template <int D, int kThreads, typename RowFn, typename Body>
__device__ __forceinline__ void Walk(RowFn row, int64_t n, int64_t tile_begin, int64_t tile_end,
                                     bf16* buf, Body&& body) {
  if (tile_begin < tile_end) LoadTile<D, kThreads>(row, n, tile_begin * kTile, buf);
  bf16* cur = buf;
  bf16* next = buf + kTile * D;
  for (int64_t i = tile_begin; i < tile_end; ++i) {
    if (i + 1 < tile_end) {
      LoadTile<D, kThreads>(row, n, (i + 1) * kTile, next);
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    body(static_cast<const bf16*>(cur), i * kTile);
    __syncthreads();  // the next copy overwrites this buffer
    bf16* done = cur;
    cur = next;
    next = done;
  }
}

// (m, l) of a base-2 log-sum-exp merged with another partial (mo, lo): m the max, l the sum
// of exp2(x − m); (-inf, 0) is empty.
__device__ __forceinline__ void MergeLse(float& m, float& l, float mo, float lo) {
  const float x = fmaxf(m, mo);
  if (x == -INFINITY) return;
  l = (m == -INFINITY ? 0.0f : l * exp2f(m - x)) + (mo == -INFINITY ? 0.0f : lo * exp2f(mo - x));
  m = x;
}

// Online log-sum-exp (base 2) of the lane's two rows (gi, gi + 8) over columns < nv.
struct RowsLse {
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  // Adds the tile at column j0 (unscaled scores s; sl = scale·log2 e).
  __device__ __forceinline__ void AddTile(float (&s)[8][4], int64_t j0, int64_t nv, float sl) {
    const int c = threadIdx.x % 4;
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] = j0 + 8 * j + 2 * c + (e & 1) < nv ? s[j][e] * sl : -INFINITY;
      }
      mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
      mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
    }
    const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
    if (n0 == -INFINITY) return;  // no visible column for this lane (then none for n1 either)
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

  // Merges (m, l) of another partial of the same rows.
  __device__ __forceinline__ void Merge(float mo0, float lo0, float mo1, float lo1) {
    MergeLse(m0, l0, mo0, lo0);
    MergeLse(m1, l1, mo1, lo1);
  }

  // Merges the four lanes that hold columns of the same rows.
  __device__ __forceinline__ void MergeLanes() {
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      Merge(__shfl_xor_sync(0xffffffffu, m0, off), __shfl_xor_sync(0xffffffffu, l0, off),
            __shfl_xor_sync(0xffffffffu, m1, off), __shfl_xor_sync(0xffffffffu, l1, off));
    }
  }
};

// Writes Sc(j) = bf16(Σ_h exp2(sl·s_h(j) − lse_h)) for the tile's columns j < n1v into out
// (+inf when no level-2 window is visible, has_lse false), summing the heads (rows) of the
// m16 tile by shuffles.
template <int D>
__device__ __forceinline__ void WriteGroupSums(const float (&s)[8][4], int64_t j0, int64_t n1v,
                                               float sl, float lse0, float lse1, bool row0,
                                               bool row1, bool has_lse, bf16* out) {
  const int lane = threadIdx.x % 32, gi = lane / 4, c = lane % 4;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    float sum_a =
        (row0 ? exp2f(s[j][0] * sl - lse0) : 0.0f) + (row1 ? exp2f(s[j][2] * sl - lse1) : 0.0f);
    float sum_b =
        (row0 ? exp2f(s[j][1] * sl - lse0) : 0.0f) + (row1 ? exp2f(s[j][3] * sl - lse1) : 0.0f);
#pragma unroll
    for (int off = 4; off < 32; off <<= 1) {
      sum_a += __shfl_xor_sync(0xffffffffu, sum_a, off);
      sum_b += __shfl_xor_sync(0xffffffffu, sum_b, off);
    }
    const int64_t col = j0 + 8 * j + 2 * c;  // even: 4-byte aligned when out is
    if (gi == 0) {
      if (!has_lse) sum_a = sum_b = INFINITY;
      if (col + 1 < n1v) {
        *reinterpret_cast<uint32_t*>(out + col) = PackBf16(sum_a, sum_b);
      } else if (col < n1v) {
        out[col] = __float2bfloat16_rn(sum_a);
      }
    }
  }
}

}  // namespace tome::kernels::cuda::group_scores
