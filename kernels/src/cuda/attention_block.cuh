// One 64-key block of flash attention on tensor cores for a warp's m16 tile of query rows
// (internal; the prefill and decode block-sparse kernels share it). The rows are the heads of
// one KV group for one token: InfLLM-v2 gives a group's heads one selection, so the whole
// tile attends a block or skips it. S = Q·Kᵀ and O += P·V are bf16 mma.sync with fp32
// accumulators; the online softmax stays in registers (base 2, fp32), P rounded to bf16.
#pragma once

#include "common.cuh"
#include "mma.cuh"

namespace tome::kernels::cuda {

// This lane's share of the tile's state: rows gi = lane / 4 and gi + 8, output columns
// 8n + 2c, 8n + 2c + 1 of each n-tile (c = lane % 4); maxima in base 2.
template <int D>
struct WarpRows {
  float o[D / 8][4];
  float m0, m1, l0, l1;

  __device__ __forceinline__ void Init() {
#pragma unroll
    for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    m0 = m1 = -INFINITY;
    l0 = l1 = 0.0f;
  }
  // l summed over the four lanes of each row (l0/l1 hold this lane's columns until then).
  __device__ __forceinline__ void SumRows() {
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      l0 += __shfl_xor_sync(0xffffffffu, l0, off);
      l1 += __shfl_xor_sync(0xffffffffu, l1, off);
    }
  }
};

// Attends one block: K and V tiles of 64 rows in swizzled shared memory (mma.cuh), qf the
// tile's A fragments. Keys past `last_key` (an index within the block: the causal limit in
// the query's own block, 63 elsewhere) are masked; the block's first key must be visible,
// which keeps every row's running maximum finite.
template <int D>
__device__ __forceinline__ void AttendBlock64(const uint32_t (&qf)[D / 16][4], const bf16* kt,
                                              const bf16* vt, float scale_log2, int last_key,
                                              WarpRows<D>& st) {
  constexpr int kChunks = D / 8;
  const int lane = threadIdx.x % 32, c = lane % 4, mi = lane / 8, mrow = lane % 8;
  float s[8][4];  // 8 n-tiles of 8 keys
  MmaRowsByTile64<D>(qf, kt, s);
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float v = s[j][e] * scale_log2;
      if (8 * j + 2 * c + (e & 1) > last_key) v = -INFINITY;
      s[j][e] = v;
    }
    mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
    mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
  }
#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
  }
  const float n0 = fmaxf(st.m0, mx0), n1 = fmaxf(st.m1, mx1);  // finite: see above
  const float c0 = exp2f(st.m0 - n0), c1 = exp2f(st.m1 - n1);
  st.m0 = n0, st.m1 = n1;
  float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    s[j][0] = exp2f(s[j][0] - n0), s[j][1] = exp2f(s[j][1] - n0);
    s[j][2] = exp2f(s[j][2] - n1), s[j][3] = exp2f(s[j][3] - n1);
    sum0 += s[j][0] + s[j][1];
    sum1 += s[j][2] + s[j][3];
  }
  st.l0 = st.l0 * c0 + sum0;  // this lane's columns; SumRows adds the row's four lanes
  st.l1 = st.l1 * c1 + sum1;
#pragma unroll
  for (int n = 0; n < kChunks; ++n) {
    st.o[n][0] *= c0, st.o[n][1] *= c0, st.o[n][2] *= c1, st.o[n][3] *= c1;
  }
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {  // 16 keys per k-step; S's C layout is P's A layout
    const uint32_t pa[4] = {
        PackBf16(s[2 * kk][0], s[2 * kk][1]), PackBf16(s[2 * kk][2], s[2 * kk][3]),
        PackBf16(s[2 * kk + 1][0], s[2 * kk + 1][1]), PackBf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
    for (int dp = 0; dp < kChunks / 2; ++dp) {
      uint32_t r[4];
      LdMatrixX4Trans(r, vt + Swizzled<D>(16 * kk + (mi & 1) * 8 + mrow, 2 * dp + (mi >> 1)));
      MmaBf16(st.o[2 * dp], pa, r[0], r[1]);
      MmaBf16(st.o[2 * dp + 1], pa, r[2], r[3]);
    }
  }
}

// Issues the copies of block `b`'s 64 keys and values (pages kp / vp) into swizzled tiles,
// rows at or past `visible` zero-filled (masked keys; zeros keep P·V finite), spread over
// `threads` threads of which this is `tid`. The caller commits the group.
template <int D>
__device__ __forceinline__ void CopyBlock64(const bf16* kp, const bf16* vp, int64_t visible,
                                            bf16* kd, bf16* vd, int tid, int threads) {
  constexpr int kChunks = D / 8;
  for (int e = tid; e < 64 * kChunks; e += threads) {
    const int row = e / kChunks, chunk = e % kChunks;
    const bool valid = row < visible;
    const int src = valid ? row * D + chunk * 8 : 0;
    CpAsync16(kd + Swizzled<D>(row, chunk), kp + src, valid);
    CpAsync16(vd + Swizzled<D>(row, chunk), vp + src, valid);
  }
}

}  // namespace tome::kernels::cuda
