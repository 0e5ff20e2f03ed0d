// Block-sparse attention on tensor cores (prefill). One CTA per (tile of up to 4 consecutive
// tokens of one query block, KV group); warp w owns token w of the tile, whose 16 query rows
// are the group's heads (InfLLM-v2 gives the heads of a group one block selection, so a warp's
// m16 tile shares one mask and a block is either attended by the whole warp or skipped).
// The CTA walks the union of its tokens' selected blocks in ascending order; each 64-key block
// of K and V is copied to shared memory once (cp.async, 3 stages deep, XOR-swizzled rows)
// and used by every warp whose token selected it. S = Q·Kᵀ and O += P·V are bf16 mma.sync
// with fp32 accumulators; the online softmax stays in registers (base 2, fp32). Dense
// attention (no selection) is the same walk over every causal block.
#include <algorithm>

#include "attention_block.cuh"
#include "common.cuh"
#include "mma.cuh"
#include "sparse_attention_mma.h"

namespace tome::kernels::cuda {
namespace {

// Warps (tokens) per CTA. Four, two CTAs an SM, rather than eight, one CTA an SM: when the
// tokens' selections differ the walk over their union leaves fewer warps idle (stage-2
// attention at 256K: 2.23 s against 3.22 s with random weights), and it cost nothing at 32K.
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kBlock = 64;                // keys per block = rows per KV page
constexpr int kStages = 3;                // blocks in flight (copies ahead of use)
constexpr int kBitmapWordsPerCta = 4096;  // bounds tq · words (16 KB of per-token bitmaps)
constexpr int64_t kMinTokens = 256;  // fewer: the SIMT kernel, or for one token the decode kernel

struct MmaParams {
  const bf16* q;
  int64_t q_stride, first_position, num_tokens, topk, out_stride;
  int hg, num_groups, tq, words;
  const int32_t* selected;  // null: dense (every causal block)
  float scale_log2;         // softmax scale · log2(e)
  bf16* out;
  PagedGroups keys, values;
};

template <int D>
__global__ void __launch_bounds__(kThreads, 2) SparseAttentionMmaKernel(MmaParams a) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row; also the output's n-tiles
  constexpr int kSteps = D / 16;  // k-steps of Q·Kᵀ
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* kbuf = reinterpret_cast<bf16*>(smem);  // [kStages][kBlock][D]
  bf16* vbuf = kbuf + kStages * kBlock * D;
  uint32_t* tok_bits = reinterpret_cast<uint32_t*>(vbuf + kStages * kBlock * D);  // [tq][words]
  uint32_t* any_bits = tok_bits + a.tq * a.words;                           // [words]
  int32_t* blocks = reinterpret_cast<int32_t*>(any_bits + a.words);          // [tq · topk]
  __shared__ int num_blocks;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = blockIdx.y;
  const int64_t tile_start = (a.first_position / a.tq + blockIdx.x) * a.tq;
  const int64_t p_lo = max(a.first_position, tile_start);
  const int64_t p_hi = min(a.first_position + a.num_tokens, tile_start + a.tq);  // exclusive
  const int nq = static_cast<int>(p_hi - p_lo);
  const int64_t t0 = p_lo - a.first_position;
  const int64_t bq = (p_hi - 1) / kBlock;  // the tile's query block
  const DevicePagedRows keys = a.keys.g[g], values = a.values.g[g];
  const bool dense = a.selected == nullptr;

  if (!dense) {  // per-token bitmaps of selected blocks, then their union as a sorted list
    const int words = static_cast<int>((bq + 32) / 32);
    for (int e = tid; e < nq * a.words; e += kThreads) tok_bits[e] = 0;
    __syncthreads();
    for (int64_t e = tid; e < nq * a.topk; e += kThreads) {
      const int64_t t = e / a.topk;
      const int32_t b = a.selected[((t0 + t) * a.num_groups + g) * a.topk + e % a.topk];
      if (b >= 0 && b <= bq) atomicOr(&tok_bits[t * a.words + b / 32], 1u << (b % 32));
    }
    __syncthreads();
    for (int w = tid; w < words; w += kThreads) {
      uint32_t x = 0;
      for (int t = 0; t < nq; ++t) x |= tok_bits[t * a.words + w];
      any_bits[w] = x;
    }
    __syncthreads();
    if (warp == 0) {
      int base = 0;
      for (int w0 = 0; w0 < words; w0 += 32) {
        const int w = w0 + lane;
        uint32_t bits = w < words ? any_bits[w] : 0u;
        const int count = __popc(bits);
        int inclusive = count;
        for (int off = 1; off < 32; off <<= 1) {
          const int v = __shfl_up_sync(0xffffffffu, inclusive, off);
          if (lane >= off) inclusive += v;
        }
        int pos = base + inclusive - count;
        while (bits != 0) {
          blocks[pos++] = w * 32 + __ffs(bits) - 1;
          bits &= bits - 1;
        }
        base += __shfl_sync(0xffffffffu, inclusive, 31);
      }
      if (lane == 0) num_blocks = base;
    }
    __syncthreads();
  }
  const int count = dense ? static_cast<int>(bq + 1) : num_blocks;

  // Copies block `i` of the walk into buffer `buf`; rows the tile cannot see are zeros (their
  // scores are masked, and zeros keep P·V finite whatever the page holds past them).
  auto load = [&](int i, int buf) {
    const int64_t b = dense ? i : blocks[i];
    CopyBlock64<D>(keys.pages[b], values.pages[b], min(int64_t{kBlock}, p_hi - kBlock * b),
                   kbuf + buf * kBlock * D, vbuf + buf * kBlock * D, tid, kThreads);
    CpAsyncCommit();
  };

  // This warp's token: rows gi and gi + 8 of its m16 tiles are heads gi and gi + 8.
  const int t = warp, gi = lane / 4, c = lane % 4;
  const bool has_token = t < nq;
  const int64_t p = p_lo + t;
  uint32_t qf[kSteps][4];
  LoadQuery<D>(a.q + (t0 + t) * a.q_stride + int64_t(g * a.hg) * D, a.hg, has_token, qf);
  WarpRows<D> st;  // this lane's share of the token's online softmax
  st.Init();

  // kStages-deep pipeline: block i + kStages − 1 is requested while block i is used; its
  // buffer was last read in iteration i − 1, which every warp has left at the barrier.
  // Empty commit groups keep the group count uniform for the wait.
#pragma unroll
  for (int stage = 0; stage < kStages - 1; ++stage) {
    if (stage < count) {
      load(stage, stage);
    } else {
      CpAsyncCommit();
    }
  }
  for (int i = 0; i < count; ++i) {
    CpAsyncWait<kStages - 2>();
    __syncthreads();
    if (i + kStages - 1 < count) {
      load(i + kStages - 1, (i + kStages - 1) % kStages);
    } else {
      CpAsyncCommit();
    }
    const int64_t b = dense ? i : blocks[i];
    const bool mine = has_token && (dense || ((tok_bits[t * a.words + b / 32] >> (b % 32)) & 1u));
    if (mine) {
      // Causal mask in the query's own block only: every other block of the walk lies
      // wholly before the tile, and every block's first key is visible to every token.
      AttendBlock64<D>(qf, kbuf + (i % kStages) * kBlock * D, vbuf + (i % kStages) * kBlock * D,
                       a.scale_log2, b == bq ? static_cast<int>(p - kBlock * b) : kBlock - 1, st);
    }
  }
  if (!has_token) return;
  st.SumRows();
  const float inv0 = st.l0 > 0.0f ? 1.0f / st.l0 : 0.0f;
  const float inv1 = st.l1 > 0.0f ? 1.0f / st.l1 : 0.0f;
  bf16* out0 = a.out + (t0 + t) * a.out_stride + int64_t(g * a.hg + gi) * D + 2 * c;
  bf16* out1 = out0 + 8 * D;
#pragma unroll
  for (int n = 0; n < kChunks; ++n) {
    if (gi < a.hg) {
      *reinterpret_cast<uint32_t*>(out0 + 8 * n) = PackBf16(st.o[n][0] * inv0, st.o[n][1] * inv0);
    }
    if (gi + 8 < a.hg) {
      *reinterpret_cast<uint32_t*>(out1 + 8 * n) = PackBf16(st.o[n][2] * inv1, st.o[n][3] * inv1);
    }
  }
}

template <int D>
cudaError_t Launch(const MmaParams& p, int64_t num_tiles, cudaStream_t stream) {
  const int max_smem = OptInDynamicSmem<SparseAttentionMmaKernel<D>>();
  const size_t smem = sizeof(bf16) * 2 * kStages * kBlock * D +
                      sizeof(uint32_t) * ((p.tq + 1) * int64_t{p.words} + p.tq * p.topk);
  if (max_smem < 0 || smem > static_cast<size_t>(max_smem)) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(num_tiles), static_cast<unsigned>(p.num_groups));
  SparseAttentionMmaKernel<D><<<grid, kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

bool Aligned4(const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; }

}  // namespace

bool BlockSparseUsesTensorCores(const BlockSparseArgs& a) {
  return a.num_tokens >= kMinTokens && BlockSparseTensorCoreShapes(a);
}

bool BlockSparseTensorCoreShapes(const BlockSparseArgs& a) {
  const int64_t hg = a.num_groups > 0 ? a.num_q_heads / a.num_groups : 0;
  if (hg < 8 || hg > 16 || a.num_groups > kMaxGroups || a.num_q_heads % a.num_groups != 0 ||
      (a.head_dim != 64 && a.head_dim != 128) || a.block_size != kBlock || a.q_stride % 2 != 0 ||
      a.out_stride % 2 != 0 || !Aligned4(a.q) || !Aligned4(a.out) || a.keys == nullptr ||
      a.values == nullptr) {
    return false;
  }
  for (int64_t g = 0; g < a.num_groups; ++g) {
    for (const DevicePagedRows* m : {&a.keys[g], &a.values[g]}) {
      if (m->rows_per_page != kBlock || m->width != a.head_dim) return false;
    }
  }
  return true;
}

cudaError_t BlockSparseAttentionMma(const BlockSparseArgs& a, cudaStream_t stream) {
  if (!BlockSparseUsesTensorCores(a)) return cudaErrorInvalidValue;
  MmaParams p{};
  p.q = a.q;
  p.q_stride = a.q_stride;
  p.first_position = a.first_position;
  p.num_tokens = a.num_tokens;
  p.topk = a.selected != nullptr ? a.topk_total : 0;
  p.out_stride = a.out_stride;
  p.hg = static_cast<int>(a.num_q_heads / a.num_groups);
  p.num_groups = static_cast<int>(a.num_groups);
  p.selected = a.selected;
  p.scale_log2 = a.scale * 1.4426950408889634f;
  p.out = a.out;
  for (int64_t g = 0; g < a.num_groups; ++g) {
    p.keys.g[g] = a.keys[g];
    p.values.g[g] = a.values[g];
  }
  const int64_t last = a.first_position + a.num_tokens - 1;
  p.words = a.selected != nullptr ? static_cast<int>((last / kBlock + 1 + 31) / 32) : 0;
  // Tokens per tile: a divisor of the block size (a tile never straddles query blocks), at
  // most one per warp, and few enough that the tile's bitmaps fit kBitmapWordsPerCta.
  const int64_t cap = std::min<int64_t>(
      kWarps, p.words > 0 ? std::max<int64_t>(1, kBitmapWordsPerCta / p.words) : kWarps);
  int64_t tq = 1;
  while (tq * 2 <= cap) tq *= 2;  // kBlock is a power of two
  p.tq = static_cast<int>(tq);
  const int64_t num_tiles = last / tq - a.first_position / tq + 1;
  return a.head_dim == 64 ? Launch<64>(p, num_tiles, stream) : Launch<128>(p, num_tiles, stream);
}

}  // namespace tome::kernels::cuda
