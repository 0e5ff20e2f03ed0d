// Stage-1 block selection. Per KV group: the visible summaries are gathered into dense
// matrices; per tile of queries the bf16 head-group sums Sc(p, j) are formed, then
// TopKKernel, one CTA per query, max-pools them into block scores and takes the top-k by
// radix select in shared memory. Group sums: for groups of 8-16 heads (the model's shapes)
// on tensor cores without materialising per-head scores (select_scores_mma.cu); otherwise
// (short calls, other shapes) cuBLAS scores every head into a bounded fp32 tile, LseKernel
// forms LSE2 per (query, head) and GroupSumKernel the sums in place, each spread over the GPU.
// Only one tile exists at a time (at most kScoreTileBytes). Calls of a few queries of the
// model's shapes (decode steps) take select_blocks_few.cu instead.
#include <algorithm>
#include <type_traits>

#include "block_topk.cuh"
#include "common.cuh"
#include "select_blocks_few.h"
#include "select_scores_mma.h"
#include "tome/kernels/cuda/gemm.h"
#include "tome/kernels/cuda/sparse_attention.h"

namespace tome::kernels::cuda {
namespace {

constexpr int kThreads = kTopKThreads;
constexpr int kMaxHeadsPerGroup = 128;
constexpr size_t kScoreTileBytes = size_t{256} << 20;

__device__ __forceinline__ int64_t NumWindows(int64_t n, int64_t w, int64_t s) {
  return n < w ? 0 : (n - w) / s + 1;
}

// One CTA per query: block scores from the query's group sums, pooled into shared-memory
// keys, then their top-k. Every thread of the CTA must call it.
template <typename Score>
__device__ void PoolAndTopK(const Score* sc, int64_t n1v, int64_t p, const SparseParams& sp,
                            uint16_t* keys, int32_t* out, float* out_scores) {
  const int64_t bp = p / sp.block_size, nb = bp + 1;
  for (int64_t b = threadIdx.x; b < nb; b += blockDim.x) keys[b] = PooledKey(sc, n1v, b, bp, sp);
  __syncthreads();
  TopKOfKeys(keys, nb, sp.topk_total, WriteSelection{out, out_scores});
}

// Query p's output slots: true (and the slots filled) when it takes every causal block and no
// scores are wanted, so nothing needs scoring.
__device__ bool TakesAllBlocks(int64_t p, const SparseParams& sp, int32_t* out,
                               const float* out_scores) {
  const int64_t nb = p / sp.block_size + 1, topk = sp.topk_total;
  if (nb > topk || out_scores != nullptr) return false;
  for (int64_t i = threadIdx.x; i < topk; i += blockDim.x) out[i] = i < nb ? int32_t(i) : -1;
  return true;
}

struct TileArgs {  // the cuBLAS path's score tiles of one group
  float* s1;        // [hg, nt, ld1] scores against K1; head 0's rows become the group sums
  const float* s2;  // [hg, nt, ld2]
  float* lse;       // [nt, hg]
  int64_t ld1, ld2, nt;
  int hg;
  int64_t p_first;  // position of the tile's first query
  SparseParams sp;
  float scale;
};

// LSE2 of one (query, head) row over its visible K2 windows; a CTA per row.
__global__ void __launch_bounds__(kThreads) LseKernel(TileArgs a) {
  __shared__ float partial[kThreads / 32];
  const int64_t t = blockIdx.x / a.hg, hh = blockIdx.x % a.hg;
  const int64_t p = a.p_first + t;
  const int64_t n2v = NumWindows(p + 1, 4 * a.sp.kernel_size, 4 * a.sp.kernel_stride);
  const float* row = a.s2 + (hh * a.nt + t) * a.ld2;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < n2v; j += blockDim.x) m = fmaxf(m, a.scale * row[j]);
  m = WarpMax(m);
  if (lane == 0) partial[warp] = m;
  __syncthreads();
  m = -INFINITY;
  for (int w = 0; w < kThreads / 32; ++w) m = fmaxf(m, partial[w]);
  __syncthreads();  // partial is reused for the sums
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < n2v; j += blockDim.x) sum += expf(a.scale * row[j] - m);
  sum = WarpSum(sum);
  if (lane == 0) partial[warp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) total += partial[w];
    a.lse[t * a.hg + hh] = m + logf(total);
  }
}

// Group sums Sc(p, j) = bf16(Σ_h exp(scale s1[h] − LSE2_h)), +inf while no K2 window is
// visible, written over head 0's row (each element read and written by one thread).
__global__ void GroupSumKernel(TileArgs a) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < a.nt * a.ld1;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = e / a.ld1, j = e % a.ld1, p = a.p_first + t;
    if (j >= NumWindows(p + 1, a.sp.kernel_size, a.sp.kernel_stride)) continue;
    float v = INFINITY;
    if (NumWindows(p + 1, 4 * a.sp.kernel_size, 4 * a.sp.kernel_stride) > 0) {
      v = 0.0f;
      for (int hh = 0; hh < a.hg; ++hh) {
        v += expf(a.scale * a.s1[(hh * a.nt + t) * a.ld1 + j] - a.lse[t * a.hg + hh]);
      }
    }
    a.s1[t * a.ld1 + j] = Round<bf16>(v);
  }
}

template <typename Score>
struct TopKArgs {
  const Score* sc;  // [nt, ld] group sums (bf16 values; null when every query takes all)
  int64_t ld;
  int g, num_groups;
  int64_t p_first, out_row0;
  SparseParams sp;
  int32_t* selected;
  float* scores;
};

template <typename Score>
__global__ void __launch_bounds__(kThreads) TopKKernel(TopKArgs<Score> a) {
  extern __shared__ uint16_t keys[];  // [nb] ordered keys of the block scores
  const int t = blockIdx.x;
  const SparseParams& sp = a.sp;
  const int64_t p = a.p_first + t;
  const int64_t out_off = ((a.out_row0 + t) * a.num_groups + a.g) * sp.topk_total;
  int32_t* out = a.selected + out_off;
  float* out_scores = a.scores ? a.scores + out_off : nullptr;
  if (TakesAllBlocks(p, sp, out, out_scores)) return;
  PoolAndTopK(a.sc + t * a.ld, NumWindows(p + 1, sp.kernel_size, sp.kernel_stride), p, sp, keys,
              out, out_scores);
}

int64_t NumK1(const SparseParams& sp, int64_t n) { return sp.NumK1(n); }
int64_t NumK2(const SparseParams& sp, int64_t n) { return sp.NumK2(n); }
size_t Align(size_t bytes) { return (bytes + 255) / 256 * 256; }

struct Plan {
  bool all_selected = false;  // every query takes all its causal blocks and no scores wanted
  bool tensor_cores = false;  // GroupScores: s1 holds bf16 group sums [tile, ld1], no s2
  int64_t hg = 0, n1 = 0, n2 = 0, ld1 = 0, ld2 = 0, tile = 0;
  size_t k1_off = 0, k2_off = 0, s1_off = 0, s2_off = 0, lse_off = 0, bytes = 0;
};

Plan MakePlan(const SelectBlocksArgs& a) {
  Plan p;
  const int64_t last = a.first_position + a.num_tokens - 1;
  p.all_selected = a.scores == nullptr && a.params.SelectsAll(last);
  if (p.all_selected || a.num_tokens == 0) return p;
  p.hg = a.num_q_heads / a.num_groups;
  p.n1 = NumK1(a.params, last + 1);
  p.n2 = NumK2(a.params, last + 1);
  p.ld1 = (std::max<int64_t>(p.n1, 1) + 7) / 8 * 8;
  p.ld2 = (std::max<int64_t>(p.n2, 1) + 7) / 8 * 8;
  p.tensor_cores = GroupScoresOnTensorCores(a.num_tokens, p.hg, a.head_dim);
  const size_t per_query =
      p.tensor_cores ? sizeof(bf16) * p.ld1 : sizeof(float) * p.hg * (p.ld1 + p.ld2 + 1);
  // Equal tiles within the budget (no small last tile that would leave the GPU idle).
  const int64_t max_tile = std::clamp<int64_t>(static_cast<int64_t>(kScoreTileBytes / per_query),
                                               1, a.num_tokens);
  p.tile = CeilDiv(a.num_tokens, CeilDiv(a.num_tokens, max_tile));
  p.k1_off = 0;
  p.k2_off = p.k1_off + Align(sizeof(bf16) * p.n1 * a.head_dim);
  p.s1_off = p.k2_off + Align(sizeof(bf16) * p.n2 * a.head_dim);
  if (p.tensor_cores) {
    p.s2_off = p.s1_off + Align(sizeof(bf16) * p.tile * p.ld1);
    p.bytes = p.s2_off;
    return p;
  }
  p.s2_off = p.s1_off + Align(sizeof(float) * p.hg * p.tile * p.ld1);
  p.lse_off = p.s2_off + Align(sizeof(float) * p.hg * p.tile * p.ld2);
  p.bytes = p.lse_off + Align(sizeof(float) * p.hg * p.tile);
  return p;
}

// Dynamic shared memory the top-k kernels may use on the current device.
int MaxSelectSmem() {
  return std::min(OptInDynamicSmem<TopKKernel<bf16>>(), OptInDynamicSmem<TopKKernel<float>>());
}

}  // namespace

size_t SelectBlocksScratchBytes(const SelectBlocksArgs& args) {
  return SelectBlocksFewTakes(args) ? SelectBlocksFewScratchBytes(args) : MakePlan(args).bytes;
}

cudaError_t SelectBlocks(const SelectBlocksArgs& a, cublasHandle_t handle, void* scratch,
                         size_t scratch_bytes, cudaStream_t stream,
                         cublasStatus_t* gemm_status) {
  if (a.num_tokens == 0) return cudaSuccess;
  if (SelectBlocksFewTakes(a)) return SelectBlocksFew(a, scratch, scratch_bytes, stream);
  const Plan plan = MakePlan(a);
  const SparseParams& sp = a.params;
  const int64_t last = a.first_position + a.num_tokens - 1;
  const int64_t nb_max = last / sp.block_size + 1;
  if (a.num_groups <= 0 || a.num_q_heads % a.num_groups != 0 ||
      a.num_q_heads / a.num_groups > kMaxHeadsPerGroup || scratch_bytes < plan.bytes) {
    return cudaErrorInvalidValue;
  }
  const size_t smem = sizeof(uint16_t) * (plan.all_selected ? 1 : nb_max);
  const int max_smem = MaxSelectSmem();
  if (max_smem < 0 || smem > static_cast<size_t>(max_smem)) return cudaErrorInvalidValue;

  char* base = static_cast<char*>(scratch);
  bf16* k1 = reinterpret_cast<bf16*>(base + plan.k1_off);
  bf16* k2 = reinterpret_cast<bf16*>(base + plan.k2_off);
  float* s1 = reinterpret_cast<float*>(base + plan.s1_off);
  float* s2 = reinterpret_cast<float*>(base + plan.s2_off);
  float* lse = reinterpret_cast<float*>(base + plan.lse_off);
  for (int64_t g = 0; g < a.num_groups; ++g) {
    // Top-k of queries [t0, t0 + nt) from their group sums (rows `ld` apart).
    auto top_k = [&](auto* sc, int64_t ld, int64_t t0, int64_t nt, size_t smem_bytes) {
      using Score = std::remove_const_t<std::remove_pointer_t<decltype(sc)>>;
      const TopKArgs<Score> k{sc, ld, static_cast<int>(g), static_cast<int>(a.num_groups),
                              a.first_position + t0, t0, sp, a.selected, a.scores};
      TopKKernel<Score><<<static_cast<unsigned>(nt), kThreads, smem_bytes, stream>>>(k);
      return cudaGetLastError();
    };
    if (plan.all_selected) {
      if (cudaError_t e = top_k(static_cast<const float*>(nullptr), 0, 0, a.num_tokens, smem);
          e != cudaSuccess) {
        return e;
      }
      continue;
    }
    if (cudaError_t e = GatherRows(a.k1[g], 0, plan.n1, k1, stream); e != cudaSuccess) return e;
    if (cudaError_t e = GatherRows(a.k2[g], 0, plan.n2, k2, stream); e != cudaSuccess) return e;
    for (int64_t t0 = 0; t0 < a.num_tokens; t0 += plan.tile) {
      const int64_t nt = std::min(plan.tile, a.num_tokens - t0);
      const int64_t p_last = a.first_position + t0 + nt - 1;
      const int64_t n1 = NumK1(sp, p_last + 1), n2 = NumK2(sp, p_last + 1);
      const bf16* q = a.q + t0 * a.q_stride + g * plan.hg * a.head_dim;
      const size_t tile_smem = sizeof(uint16_t) * (p_last / sp.block_size + 1);
      if (plan.tensor_cores) {
        GroupScoresArgs gs;
        gs.q = q;
        gs.q_stride = a.q_stride;
        gs.num_tokens = nt;
        gs.first_position = a.first_position + t0;
        gs.heads = static_cast<int>(plan.hg);
        gs.k1 = k1;
        gs.k2 = k2;
        gs.n1 = n1;
        gs.n2 = n2;
        gs.head_dim = a.head_dim;
        gs.kernel_size = sp.kernel_size;
        gs.kernel_stride = sp.kernel_stride;
        gs.scale = a.scale;
        gs.out = reinterpret_cast<bf16*>(s1);
        gs.ld = plan.ld1;
        if (cudaError_t e = GroupScores(gs, stream); e != cudaSuccess) return e;
        if (cudaError_t e = top_k(reinterpret_cast<const bf16*>(s1), plan.ld1, t0, nt, tile_smem);
            e != cudaSuccess) {
          return e;
        }
        continue;
      }
      // scores[h, t, j] = q_{t,h} · summary_j for every head of the group (unscaled).
      auto score = [&](const bf16* summaries, int64_t n, float* out, int64_t ld) {
        return BatchedScores(handle, q, a.q_stride, a.head_dim, summaries, a.head_dim, out, ld,
                             nt * ld, nt, n, a.head_dim, plan.hg);
      };
      for (const cublasStatus_t st : {score(k2, n2, s2, plan.ld2), score(k1, n1, s1, plan.ld1)}) {
        if (st != CUBLAS_STATUS_SUCCESS) {
          if (gemm_status) *gemm_status = st;
          return cudaErrorUnknown;
        }
      }
      TileArgs t{s1, s2, lse, plan.ld1, plan.ld2, nt, static_cast<int>(plan.hg),
                 a.first_position + t0, sp, a.scale};
      LseKernel<<<static_cast<unsigned>(nt * plan.hg), kThreads, 0, stream>>>(t);
      GroupSumKernel<<<GridFor(nt * plan.ld1, kThreads), kThreads, 0, stream>>>(t);
      if (cudaError_t e = top_k(static_cast<const float*>(s1), plan.ld1, t0, nt, tile_smem);
          e != cudaSuccess) {
        return e;
      }
    }
  }
  return cudaSuccess;
}

}  // namespace tome::kernels::cuda
