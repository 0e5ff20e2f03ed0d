// Stage-1 selection for a few queries, the summaries split over the GPU (select_blocks_few.h).
// Each scoring CTA is one warp holding its query's heads as MMA rows (group_scores.cuh) and
// walking a chunk of 64-summary tiles copied from the summary pages; per-chunk LSE parts
// are merged by every level-1 CTA before it writes its group sums.
#include <algorithm>

#include "block_topk.cuh"
#include "common.cuh"
#include "group_scores.cuh"
#include "select_blocks_few.h"

namespace tome::kernels::cuda {
namespace {

using namespace group_scores;

constexpr int kMaxFewTokens = 16;
constexpr int kRows = 16;  // head rows of a warp's m16 tiles
constexpr int kMinTilesPerCta = 2;

struct FewArgs {
  const bf16* q;
  int64_t q_stride, first_position;
  int num_tokens, num_groups, hg;
  PagedGroups k1, k2;
  SparseParams sp;
  float sl;  // scale · log2 e
  int64_t tiles_per_cta1, tiles_per_cta2, chunks1, chunks2;
  float2* parts;  // [T, G, chunks2, kRows] (max, Σ exp2) of each head row's level-2 scores
  bf16* sc;       // [T, G, ld1] group sums of the visible level-1 windows
  int64_t ld1;
  int32_t* cand_blocks;  // [T, G, ldc] each slice's top-k blocks (-1 padding)
  uint16_t* cand_keys;   // [T, G, ldc] and their ordered keys
  int64_t ldc;
  bool one_slice;  // SliceTopKKernel writes the selection (no MergeTopKKernel)
  int32_t* selected;
  float* scores;
};

// The query's visible windows of one level (as many as its summaries hold at most).
__device__ __forceinline__ int64_t Visible(int64_t p, int64_t window, int64_t stride,
                                           const DevicePagedRows& m) {
  return min(m.num_rows, Windows(p + 1, window, stride));
}

template <int D>
__global__ void __launch_bounds__(32) Lse2PartsKernel(FewArgs a) {
  WaitForPriorKernels();
  __shared__ __align__(128) bf16 buf[2 * kTile * D];
  const int chunk = blockIdx.x, g = blockIdx.y, t = blockIdx.z;
  const int gi = threadIdx.x / 4, c = threadIdx.x % 4;
  const int64_t p = a.first_position + t;
  const DevicePagedRows k2 = a.k2.g[g];
  const int64_t n2v = Visible(p, 4 * a.sp.kernel_size, 4 * a.sp.kernel_stride, k2);
  const int64_t begin = chunk * a.tiles_per_cta2;
  const int64_t end = min(begin + a.tiles_per_cta2, TilesOf(n2v));
  uint32_t qf[D / 16][4];
  LoadQuery<D>(a.q + t * a.q_stride + int64_t{g} * a.hg * D, a.hg, true, qf);
  RowsLse lse;
  Walk<D, 32>(k2, n2v, begin, end, buf, [&](const bf16* kt, int64_t j0) {
    float s[8][4];
    MmaRowsByTile64<D>(qf, kt, s);
    lse.AddTile(s, j0, n2v, a.sl);
  });
  lse.MergeLanes();
  if (c == 0) {
    float2* part = a.parts + ((int64_t{t} * a.num_groups + g) * a.chunks2 + chunk) * kRows;
    part[gi] = make_float2(lse.m0, lse.l0);
    part[gi + 8] = make_float2(lse.m1, lse.l1);
  }
}

// LSE2 (base 2) of this lane's head rows gi and gi + 8 from the parts of every chunk: lane l
// merges row l % 16 over every other chunk, the two halves of the warp combine, and each
// lane fetches its rows.
__device__ __forceinline__ float2 RowsLseFromParts(const float2* parts, int64_t chunks) {
  const int lane = threadIdx.x % 32;
  float m = -INFINITY, l = 0.0f;
#pragma unroll 8
  for (int64_t k = lane / kRows; k < chunks; k += 2) {
    const float2 x = parts[k * kRows + lane % kRows];
    MergeLse(m, l, x.x, x.y);
  }
  MergeLse(m, l, __shfl_xor_sync(0xffffffffu, m, 16), __shfl_xor_sync(0xffffffffu, l, 16));
  const float lse = m + log2f(l);
  const int gi = lane / 4;
  return make_float2(__shfl_sync(0xffffffffu, lse, gi), __shfl_sync(0xffffffffu, lse, gi + 8));
}

template <int D>
__global__ void __launch_bounds__(32) FewGroupSumsKernel(FewArgs a) {
  WaitForPriorKernels();
  __shared__ __align__(128) bf16 buf[2 * kTile * D];
  const int chunk = blockIdx.x, g = blockIdx.y, t = blockIdx.z;
  const int gi = threadIdx.x / 4;
  const int64_t p = a.first_position + t;
  const DevicePagedRows k1 = a.k1.g[g];
  const int64_t n1v = Visible(p, a.sp.kernel_size, a.sp.kernel_stride, k1);
  const int64_t n2v = Visible(p, 4 * a.sp.kernel_size, 4 * a.sp.kernel_stride, a.k2.g[g]);
  const int64_t begin = chunk * a.tiles_per_cta1;
  const int64_t end = min(begin + a.tiles_per_cta1, TilesOf(n1v));
  if (begin >= end) return;  // uniform over the CTA (one warp)
  const int64_t row = int64_t{t} * a.num_groups + g;
  const float2 lse = RowsLseFromParts(a.parts + row * a.chunks2 * kRows, a.chunks2);
  uint32_t qf[D / 16][4];
  LoadQuery<D>(a.q + t * a.q_stride + int64_t{g} * a.hg * D, a.hg, true, qf);
  bf16* out = a.sc + row * a.ld1;
  Walk<D, 32>(k1, n1v, begin, end, buf, [&](const bf16* kt, int64_t j0) {
    float s[8][4];
    MmaRowsByTile64<D>(qf, kt, s);
    WriteGroupSums<D>(s, j0, n1v, a.sl, lse.x, lse.y, gi<a.hg, gi + 8 < a.hg, n2v> 0, out);
  });
}

// Where row t · G + g's selection (and its scores, when wanted) goes.
__device__ __forceinline__ WriteSelection RowSelection(const FewArgs& a, int64_t row) {
  const int64_t topk = a.sp.topk_total;
  return WriteSelection{a.selected + row * topk, a.scores ? a.scores + row * topk : nullptr};
}

// Blocks a slice-top-k CTA pools (>= any top-k the model uses, so that only the last slice
// of a query can hold fewer than top-k blocks).
constexpr int64_t kSlice = 2048;

// Top-k in two steps, so that a decode step's 16K blocks at 1M tokens are not ranked by one
// CTA per group: a CTA per (slice of blocks, query · group) pools its blocks' keys into
// shared memory and writes its own top-k as candidates (block, key), in ascending block order;
// MergeTopKKernel takes the top-k of a row's candidates. The candidates of all slices hold the
// row's top-k (an element of it has fewer than k better elements in its slice too, ties
// going to the lower block in both), and they are in ascending block order with the padding
// of a short last slice at the end, so ties still go to the lower block.
__global__ void __launch_bounds__(kTopKThreads) SliceTopKKernel(FewArgs a) {
  WaitForPriorKernels();
  __shared__ __align__(16) uint16_t keys[kSlice];
  const int64_t slice = blockIdx.x, row = blockIdx.y;  // row t · G + g: (query t, group g)
  const int64_t t = row / a.num_groups, g = row % a.num_groups;
  const int64_t p = a.first_position + t, bp = p / a.sp.block_size;
  const int64_t first = slice * kSlice, n = min(kSlice, bp + 1 - first);
  if (n <= 0) return;  // past this query's blocks (uniform over the CTA)
  const int64_t n1v = Visible(p, a.sp.kernel_size, a.sp.kernel_stride, a.k1.g[g]);
  const bf16* sc = a.sc + row * a.ld1;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    keys[i] = PooledKey(sc, n1v, first + i, bp, a.sp);
  }
  __syncthreads();
  const int64_t topk = a.sp.topk_total, base = row * a.ldc + slice * topk;
  if (a.one_slice) {  // every query's blocks fit one slice: its top-k is the answer
    return TopKOfKeys(keys, n, topk, RowSelection(a, row));
  }
  TopKOfKeys(keys, n, topk, [&](int slot, int64_t b, uint16_t key) {
    a.cand_blocks[base + slot] = b >= 0 ? static_cast<int32_t>(first + b) : -1;
    a.cand_keys[base + slot] = key;
  });
}

__global__ void __launch_bounds__(kTopKThreads) MergeTopKKernel(FewArgs a) {
  WaitForPriorKernels();
  extern __shared__ __align__(16) uint16_t cand[];
  const int64_t row = blockIdx.x;
  const int64_t p = a.first_position + row / a.num_groups;
  const int64_t topk = a.sp.topk_total;
  const int64_t n = (p / a.sp.block_size + kSlice) / kSlice * topk;  // slices of p's blocks
  const uint16_t* keys = a.cand_keys + row * a.ldc;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) cand[i] = keys[i];
  __syncthreads();
  const int32_t* blocks = a.cand_blocks + row * a.ldc;
  const WriteSelection write = RowSelection(a, row);
  TopKOfKeys(cand, n, topk,
             [&](int slot, int64_t b, uint16_t key) { write(slot, b >= 0 ? blocks[b] : -1, key); });
}

size_t Align(size_t bytes) { return (bytes + 255) / 256 * 256; }

struct Layout {
  int64_t tiles_per_cta1 = 0, tiles_per_cta2 = 0, chunks1 = 0, chunks2 = 0, ld1 = 0;
  int64_t slices = 0, ldc = 0;  // block slices of the last query; candidates a row
  size_t sc_off = 0, cand_blocks_off = 0, cand_keys_off = 0, bytes = 0;
};

// Tiles per CTA: enough CTAs for ~4 a streaming multiprocessor over all queries and groups.
int64_t TilesPerCta(int64_t tiles, int64_t rows) {
  const int64_t target = 4 * int64_t{NumSms()};
  return std::max<int64_t>(kMinTilesPerCta, CeilDiv(tiles * rows, target));
}

Layout MakeLayout(const SelectBlocksArgs& a) {
  Layout l;
  const int64_t last = a.first_position + a.num_tokens - 1;
  const int64_t rows = a.num_tokens * a.num_groups;
  const int64_t tiles1 = CeilDiv(a.params.NumK1(last + 1), kTile);
  const int64_t tiles2 = CeilDiv(a.params.NumK2(last + 1), kTile);
  l.tiles_per_cta1 = TilesPerCta(tiles1, rows);
  l.tiles_per_cta2 = TilesPerCta(tiles2, rows);
  l.chunks1 = std::max<int64_t>(1, CeilDiv(tiles1, l.tiles_per_cta1));
  l.chunks2 = std::max<int64_t>(1, CeilDiv(tiles2, l.tiles_per_cta2));
  l.ld1 = std::max<int64_t>(8, tiles1 * kTile);  // even: the group sums are stored in pairs
  l.slices = CeilDiv(last / a.params.block_size + 1, kSlice);
  l.ldc = l.slices * a.params.topk_total;
  l.sc_off = Align(sizeof(float2) * rows * l.chunks2 * kRows);
  l.cand_blocks_off = l.sc_off + Align(sizeof(bf16) * rows * l.ld1);
  l.cand_keys_off = l.cand_blocks_off + Align(sizeof(int32_t) * rows * l.ldc);
  l.bytes = l.cand_keys_off + Align(sizeof(uint16_t) * rows * l.ldc);
  return l;
}

template <int D>
cudaError_t LaunchScores(const FewArgs& f, cudaStream_t stream) {
  const dim3 grid2(static_cast<unsigned>(f.chunks2), static_cast<unsigned>(f.num_groups),
                   static_cast<unsigned>(f.num_tokens));
  if (cudaError_t e = LaunchAfterPrior(Lse2PartsKernel<D>, grid2, 32, 0, stream, f);
      e != cudaSuccess)
    return e;
  const dim3 grid1(static_cast<unsigned>(f.chunks1), static_cast<unsigned>(f.num_groups),
                   static_cast<unsigned>(f.num_tokens));
  return LaunchAfterPrior(FewGroupSumsKernel<D>, grid1, 32, 0, stream, f);
}

}  // namespace

bool SelectBlocksFewTakes(const SelectBlocksArgs& a) {
  if (a.num_tokens < 1 || a.num_tokens > kMaxFewTokens || a.num_groups < 1 ||
      a.num_groups > kMaxGroups || a.num_q_heads % a.num_groups != 0) {
    return false;
  }
  const int64_t hg = a.num_q_heads / a.num_groups;
  const int64_t last = a.first_position + a.num_tokens - 1;
  const bool all_selected = a.scores == nullptr && a.params.SelectsAll(last);
  return !all_selected && hg >= 1 && hg <= kRows && (a.head_dim == 64 || a.head_dim == 128) &&
         a.params.topk_total <= kSlice && a.q_stride % 2 == 0 &&
         reinterpret_cast<uintptr_t>(a.q) % 4 == 0;
}

size_t SelectBlocksFewScratchBytes(const SelectBlocksArgs& a) { return MakeLayout(a).bytes; }

cudaError_t SelectBlocksFew(const SelectBlocksArgs& a, void* scratch, size_t scratch_bytes,
                            cudaStream_t stream) {
  const Layout l = MakeLayout(a);
  if (!SelectBlocksFewTakes(a) || scratch_bytes < l.bytes) return cudaErrorInvalidValue;
  const size_t smem = sizeof(uint16_t) * l.ldc;  // the candidates of a row
  const int max_smem = OptInDynamicSmem<MergeTopKKernel>();
  if (max_smem < 0 || smem > static_cast<size_t>(max_smem)) return cudaErrorInvalidValue;
  FewArgs f{};
  f.q = a.q;
  f.q_stride = a.q_stride;
  f.first_position = a.first_position;
  f.num_tokens = static_cast<int>(a.num_tokens);
  f.num_groups = static_cast<int>(a.num_groups);
  f.hg = static_cast<int>(a.num_q_heads / a.num_groups);
  for (int64_t g = 0; g < a.num_groups; ++g) {
    f.k1.g[g] = a.k1[g];
    f.k2.g[g] = a.k2[g];
  }
  f.sp = a.params;
  f.sl = a.scale * 1.4426950408889634f;
  f.tiles_per_cta1 = l.tiles_per_cta1;
  f.tiles_per_cta2 = l.tiles_per_cta2;
  f.chunks1 = l.chunks1;
  f.chunks2 = l.chunks2;
  char* base = static_cast<char*>(scratch);
  f.parts = reinterpret_cast<float2*>(base);
  f.sc = reinterpret_cast<bf16*>(base + l.sc_off);
  f.ld1 = l.ld1;
  f.cand_blocks = reinterpret_cast<int32_t*>(base + l.cand_blocks_off);
  f.cand_keys = reinterpret_cast<uint16_t*>(base + l.cand_keys_off);
  f.ldc = l.ldc;
  f.one_slice = l.slices == 1;
  f.selected = a.selected;
  f.scores = a.scores;
  if (cudaError_t e = a.head_dim == 64 ? LaunchScores<64>(f, stream) : LaunchScores<128>(f, stream);
      e != cudaSuccess) {
    return e;
  }
  const int64_t rows = a.num_tokens * a.num_groups;
  const dim3 slices(static_cast<unsigned>(l.slices), static_cast<unsigned>(rows));
  if (cudaError_t e = LaunchAfterPrior(SliceTopKKernel, slices, kTopKThreads, 0, stream, f);
      e != cudaSuccess || f.one_slice) {
    return e;
  }
  return LaunchAfterPrior(MergeTopKKernel, static_cast<unsigned>(rows), kTopKThreads, smem, stream,
                          f);
}

}  // namespace tome::kernels::cuda
