// Block top-k of stage 1 (internal): ordered 16-bit keys of bf16 block scores, the pooled
// score of one block, and a CTA's radix select of the top-k keys held in shared memory
// (ties to the lower block index, output ascending).
#pragma once

#include "common.cuh"
#include "tome/kernels/sparse_params.h"

namespace tome::kernels::cuda {

constexpr int kTopKThreads = 512;  // the CTA size TopKOfKeys is written for

// Monotone map of bf16 values (held in floats) to 16-bit keys (larger value, larger key) and
// back. A bf16 value's float has 16 zero low bits, so its 32-bit order key (flipped when
// negative) is determined by the top 16 bits, and two radix passes select exactly.
__device__ __forceinline__ uint16_t OrderKey(float f) {
  const uint32_t u = __float_as_uint(f);
  return static_cast<uint16_t>(((u & 0x80000000u) ? ~u : (u | 0x80000000u)) >> 16);
}
__device__ __forceinline__ float FromKey(uint16_t key) {
  const uint32_t k = uint32_t{key} << 16;
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~(k | 0xffffu));
}

// Warp 0 finds the radix digit holding the need-th largest key: the largest d with
// Σ_{d' ≥ d} hist[d'] ≥ need. Lane l holds digits 255 − 8l down to 248 − 8l.
__device__ inline void FindDigit(const uint32_t* hist, uint32_t prefix, int shift, int need,
                                 uint32_t* s_prefix, int* s_need) {
  const int lane = threadIdx.x % 32;
  int mine = 0;
  for (int i = 0; i < 8; ++i) mine += static_cast<int>(hist[255 - 8 * lane - i]);
  int inclusive = mine;  // keys in digits ≥ 248 − 8·lane
  for (int off = 1; off < 32; off <<= 1) {
    const int v = __shfl_up_sync(0xffffffffu, inclusive, off);
    if (lane >= off) inclusive += v;
  }
  const unsigned reached = __ballot_sync(0xffffffffu, inclusive >= need);
  if (lane == __ffs(reached) - 1) {  // the first lane whose digits reach `need`
    int above = inclusive - mine;
    for (int i = 0; i < 8; ++i) {
      const int d = 255 - 8 * lane - i, h = static_cast<int>(hist[d]);
      if (above + h >= need) {
        *s_prefix = prefix | (static_cast<uint32_t>(d) << shift);
        *s_need = need - above;
        break;
      }
      above += h;
    }
  }
}

// Ordered key of block b's score for the query at position p (bp = p / block_size, n1v its
// visible level-1 windows, sc its group sums: bf16-rounded values, float or bf16 storage):
// the max over the visible windows overlapping the block; +inf for forced blocks (the first
// init_blocks and the local window).
template <typename Score>
__device__ __forceinline__ uint16_t PooledKey(const Score* sc, int64_t n1v, int64_t b, int64_t bp,
                                              const SparseParams& sp) {
  const int64_t B = sp.block_size;
  float v = INFINITY;
  if (b >= sp.init_blocks && b < bp - sp.local_blocks) {
    const int64_t num = B * b - sp.kernel_size + 1;
    const int64_t lo = num <= 0 ? 0 : (num + sp.kernel_stride - 1) / sp.kernel_stride;
    const int64_t hi = min((B * b + B - 1) / sp.kernel_stride, n1v - 1);
    v = -INFINITY;
    for (int64_t j = lo; j <= hi; ++j) v = fmaxf(v, ToFloat(sc[j]));
  }
  return OrderKey(v);
}

// Writes a selection: out[slot] = block (-1 padding) and, when wanted, its score.
struct WriteSelection {
  int32_t* out;
  float* scores;  // may be null
  __device__ void operator()(int slot, int64_t b, uint16_t key) const {
    out[slot] = static_cast<int32_t>(b);
    if (scores) scores[slot] = b >= 0 ? FromKey(key) : 0.0f;
  }
};

// The top-k of keys[0, nb) (shared memory, written before a barrier), ties to the lower index:
// emit(slot, index, key) for slots 0..topk-1 in ascending index order, index -1 (key 0) for
// the padding when nb < topk. Every thread of the CTA (kTopKThreads) must call it.
template <typename Emit>
__device__ void TopKOfKeys(const uint16_t* keys, int64_t nb, int64_t topk, const Emit& emit) {
  __shared__ uint32_t hist[256];
  __shared__ int warp_counts[kTopKThreads / 32];
  __shared__ uint32_t s_prefix;
  __shared__ int s_need;
  const int tid = threadIdx.x;
  if (nb <= topk) {
    for (int64_t i = tid; i < topk; i += blockDim.x) {
      emit(static_cast<int>(i), i < nb ? i : -1, i < nb ? keys[i] : uint16_t{0});
    }
    return;
  }
  // Radix select (8 bits a pass, high to low) of the topk-th largest key. Scores cluster (the
  // first pass sees one or two digits), so lanes with equal digits add once per warp.
  uint32_t prefix = 0, mask = 0;
  int need = static_cast<int>(topk);
  const int lane = tid % 32;
  for (int shift = 8; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    for (int64_t b0 = 0; b0 < nb; b0 += blockDim.x) {  // uniform trip count for the match
      const int64_t b = b0 + tid;
      const uint32_t u = b < nb ? keys[b] : 0u;
      const bool counted = b < nb && (u & mask) == prefix;
      const uint32_t digit = counted ? (u >> shift) & 0xffu : 256u;
      const unsigned same = __match_any_sync(0xffffffffu, digit);
      if (counted && lane == __ffs(same) - 1) atomicAdd(&hist[digit], __popc(same));
    }
    __syncthreads();
    if (tid < 32) FindDigit(hist, prefix, shift, need, &s_prefix, &s_need);
    __syncthreads();
    prefix = s_prefix;  // rewritten only after two more barriers
    need = s_need;
    mask |= 0xffu << shift;
  }
  // Keys above the threshold, plus the `need` lowest-index keys equal to it (ties to the
  // lower block index), written in ascending block order. Each warp owns one contiguous
  // range of blocks (lanes read consecutive keys); one scan over the warps places them.
  const int warp = tid / 32, num_warps = blockDim.x / 32;
  const int64_t per_warp = (nb + num_warps - 1) / num_warps;
  const int64_t w_lo = min(nb, warp * per_warp), w_hi = min(nb, w_lo + per_warp);
  int w_equal = 0, w_above = 0;
  for (int64_t b = w_lo + lane; b - lane < w_hi; b += 32) {
    const uint32_t u = b < w_hi ? keys[b] : 0u;
    w_equal += __popc(__ballot_sync(0xffffffffu, b < w_hi && u == prefix));
    w_above += __popc(__ballot_sync(0xffffffffu, b < w_hi && u > prefix));
  }
  // Lane 0 of each warp carries the warp's counts into the block scans.
  int total;
  const int eq_before =
      __shfl_sync(0xffffffffu, BlockExclusiveSum(lane == 0 ? w_equal : 0, &total, warp_counts), 0);
  const int w_take = w_above + max(0, min(w_equal, need - eq_before));
  int pos =
      __shfl_sync(0xffffffffu, BlockExclusiveSum(lane == 0 ? w_take : 0, &total, warp_counts), 0);
  int eq_seen = eq_before;
  const unsigned below_lane = (1u << lane) - 1u;
  for (int64_t b = w_lo + lane; b - lane < w_hi; b += 32) {
    const uint32_t u = b < w_hi ? keys[b] : 0u;
    const bool equal = b < w_hi && u == prefix;
    const unsigned equals = __ballot_sync(0xffffffffu, equal);
    const bool take =
        (b < w_hi && u > prefix) || (equal && eq_seen + __popc(equals & below_lane) < need);
    const unsigned takes = __ballot_sync(0xffffffffu, take);
    if (take) emit(pos + __popc(takes & below_lane), b, static_cast<uint16_t>(u));
    eq_seen += __popc(equals);
    pos += __popc(takes);
  }
}

}  // namespace tome::kernels::cuda
