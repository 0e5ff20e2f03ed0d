// Block-sparse attention (flash-style, SIMT fp32; prefill-sized calls of the model's shapes go
// to the tensor-core kernel in sparse_attention_mma.cu). One CTA per (query tile, KV group): a
// tile is up to tq consecutive tokens of one query block, so its tq·hg query rows (tokens × heads
// of the group) share the diagonal block. The CTA walks the union of the tile's selected
// blocks in ascending order; each 64-key tile of K/V is loaded to shared memory once and
// used by every row, rows whose token did not select the block masked to -inf. Each thread
// holds a kRpt x 4 tile of scores and a kRpt x d/16 tile of the output; online softmax per
// row in fp32. Two shapes: kRpt = 8 (128 rows: 8 tokens of 16 heads) for dense attention,
// where every token of a tile uses every causal block, and kRpt = 1 (16 rows: one token of
// 16 heads) for selections, whose union over several tokens would mostly be masked work.
#include <algorithm>

#include "common.cuh"
#include "sparse_attention_decode.h"
#include "sparse_attention_mma.h"
#include "split_combine.h"
#include "tome/kernels/cuda/sparse_attention.h"

namespace tome::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kKeyTile = 64;
constexpr int kLdk = kKeyTile + 4;  // k transposed [d][kLdk]; +4 keeps float4 alignment
constexpr int kBitmapWordsPerCta = 4096;  // bounds tq · words (16 KB of per-token bitmaps)

template <int kRpt>
struct Shape {
  static constexpr int kRows = 16 * kRpt;         // query rows per CTA
  static constexpr int kLdq = kRows + 4;          // q transposed [d][kLdq]
  static constexpr int kLdp = kRows + 4;          // probabilities transposed [key][kLdp]
  static constexpr int kTpr = kThreads / kRows;   // softmax threads per row
  static constexpr int kKpt = kKeyTile / kTpr;    // softmax keys per thread
};

struct Params {
  const bf16* q;
  int64_t q_stride, first_position, num_tokens, block_size, topk;
  int hg, num_groups, tq, words;
  const int32_t* selected;
  float scale;
  bf16* out;
  int64_t out_stride;
  PagedGroups keys, values;
  // splits > 1: CTA z takes the z-th share of the tile's blocks and writes unnormalised
  // partial outputs (fp32) and row maxima / sums for CombineKernel instead of `out`.
  int splits;
  float* part_o;   // [splits, T, Hq, d]
  float* part_ml;  // [splits, T, Hq, 2]: running max and normaliser
  int num_q_heads;
};

template <int D, int kRpt>
constexpr size_t SmemFloats() {
  using S = Shape<kRpt>;
  return size_t{D} * S::kLdq + size_t{D} * kLdk + size_t{kKeyTile} * D +
         size_t{kKeyTile} * S::kLdp + 3 * S::kRows;
}

// Loads n consecutive floats of shared memory (16-byte vectors where n allows).
template <int n>
__device__ __forceinline__ void LoadRow(const float* src, float (&dst)[n]) {
  if constexpr (n % 4 == 0) {
#pragma unroll
    for (int i = 0; i < n; i += 4) {
      const float4 v = *reinterpret_cast<const float4*>(src + i);
      dst[i] = v.x, dst[i + 1] = v.y, dst[i + 2] = v.z, dst[i + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < n; ++i) dst[i] = src[i];
  }
}

// Split `split` of `splits` takes the union's blocks of ranks [first_block, end_block) (in
// ascending block order); its walk starts at word start_word, whose first set bit has rank
// start_rank (start_word = words when the share is empty). Uniform over the CTA.
struct UnionShare {
  int first_block, end_block, start_word, start_rank;
};

__device__ UnionShare FindUnionShare(const uint32_t* any_bits, int words, int split, int splits) {
  __shared__ int warp_sums[kThreads / 32];
  __shared__ int start[2];
  // Thread tid counts the set bits of a contiguous run of words; a prefix sum over the
  // threads gives each run's first rank.
  const int per = (words + kThreads - 1) / kThreads;
  const int w_lo = min(int(threadIdx.x) * per, words), w_hi = min(w_lo + per, words);
  int count = 0;
  for (int w = w_lo; w < w_hi; ++w) count += __popc(any_bits[w]);
  if (threadIdx.x == 0) start[0] = words, start[1] = 0;
  int union_size = 0;
  const int first_rank = BlockExclusiveSum(count, &union_size, warp_sums);
  UnionShare s;
  s.first_block = static_cast<int>(int64_t(union_size) * split / splits);
  s.end_block = static_cast<int>(int64_t(union_size) * (split + 1) / splits);
  if (count > 0 && first_rank <= s.first_block && s.first_block < first_rank + count) {
    start[0] = w_lo, start[1] = first_rank;  // exactly one run holds rank first_block
  }
  __syncthreads();
  s.start_word = start[0];
  s.start_rank = start[1];
  return s;
}

template <int D, int kRpt>
__global__ void __launch_bounds__(kThreads, 1) SparseAttentionKernel(Params a) {
  WaitForPriorKernels();
  using S = Shape<kRpt>;
  constexpr int kRows = S::kRows, kLdq = S::kLdq, kLdp = S::kLdp;
  constexpr int kCols = D / 16;  // output columns per thread
  extern __shared__ float smem[];
  float* qt = smem;
  float* kt = qt + D * kLdq;
  float* vs = kt + D * kLdk;  // [kKeyTile][D]
  float* pt = vs + kKeyTile * D;
  float* row_m = pt + kKeyTile * kLdp;
  float* row_l = row_m + kRows;
  float* row_c = row_l + kRows;
  uint32_t* tok_bits = reinterpret_cast<uint32_t*>(row_c + kRows);  // [tq][words]
  uint32_t* any_bits = tok_bits + a.tq * a.words;                        // [words]
  __shared__ const bf16* krow[kKeyTile];
  __shared__ const bf16* vrow[kKeyTile];

  const int tid = threadIdx.x, g = blockIdx.y, hg = a.hg;
  const int64_t tile_start = (a.first_position / a.tq + blockIdx.x) * a.tq;
  const int64_t p_lo = max(a.first_position, tile_start);
  const int64_t p_hi = min(a.first_position + a.num_tokens, tile_start + a.tq);  // exclusive
  const int nq = static_cast<int>(p_hi - p_lo);
  const int64_t t0 = p_lo - a.first_position;
  const int rows = nq * hg;
  const int64_t B = a.block_size, bq = (p_hi - 1) / B;
  const DevicePagedRows keys = a.keys.g[g], values = a.values.g[g];

  for (int e = tid; e < rows * D; e += kThreads) {
    const int r = e / D, k = e % D, t = r / hg, hh = r % hg;
    qt[k * kLdq + r] = ToFloat(a.q[(t0 + t) * a.q_stride + int64_t(g * hg + hh) * D + k]);
  }
  for (int r = tid; r < kRows; r += kThreads) {
    row_m[r] = -INFINITY;
    row_l[r] = 0.0f;
  }
  // Which blocks each token selected (bitmaps), and their union.
  const int words = static_cast<int>((bq + 32) / 32);
  if (a.selected != nullptr) {
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
  } else {
    for (int w = tid; w < words; w += kThreads) {
      const int64_t n = bq + 1 - int64_t(w) * 32;
      any_bits[w] = n >= 32 ? 0xffffffffu : (1u << n) - 1u;
    }
  }
  __syncthreads();

  const int ty = tid / 16, tx = tid % 16;  // rows ty*kRpt.., keys tx*4.., out cols tx*kCols..
  const bool active = ty * kRpt < rows;
  float o[kRpt][kCols];
#pragma unroll
  for (int x = 0; x < kRpt; ++x)
#pragma unroll
    for (int y = 0; y < kCols; ++y) o[x][y] = 0.0f;

  // This CTA's share of the union's blocks (all of them without a split), found by a prefix
  // count over the bitmap's words spread over the threads: at 1M tokens the bitmap has 512
  // words, which one thread walking them all (twice) took microseconds over.
  const int split = blockIdx.z;
  const UnionShare share = FindUnionShare(any_bits, words, split, a.splits);
  int rank = share.start_rank - 1;
  for (int w = share.start_word; w < words && rank + 1 < share.end_block; ++w) {
    uint32_t bits = any_bits[w];
    while (bits != 0 && rank + 1 < share.end_block) {
      const int bit = __ffs(bits) - 1;
      bits &= bits - 1;
      ++rank;
      if (rank < share.first_block) continue;
      const int64_t b = int64_t(w) * 32 + bit;
      const int64_t block_keys = min(B, p_hi - B * b);  // keys of block b the tile can see
      for (int64_t k0 = 0; k0 < block_keys; k0 += kKeyTile) {
        const int nk = static_cast<int>(min(int64_t{kKeyTile}, block_keys - k0));
        const int64_t tau0 = B * b + k0;
        // Row addresses once per tile (PagedRow divides), then 16-byte loads: keys with the
        // row index fastest (transposed, conflict-free stores), values with the column fastest.
        if (tid < kKeyTile) {
          krow[tid] = tid < nk ? PagedRow(keys, tau0 + tid) : nullptr;
          vrow[tid] = tid < nk ? PagedRow(values, tau0 + tid) : nullptr;
        }
        __syncthreads();
        // Every K and V load of this thread is issued before any shared-memory store: with
        // loads and stores interleaved the compiler kept one load in flight at a time (the
        // stores might alias krow/vrow for all it knows), eight memory round trips a tile.
        constexpr int kVecs = kKeyTile * (D / 8);  // 16-byte vectors of K, and of V
        constexpr int kPerThread = (kVecs + kThreads - 1) / kThreads;
        uint4 kraw[kPerThread], vraw[kPerThread];
#pragma unroll
        for (int i = 0; i < kPerThread; ++i) {
          const int e = tid + i * kThreads;
          const int kj = e % kKeyTile, kc8 = (e / kKeyTile) * 8;  // keys: row index fastest
          const int vj = e / (D / 8), vc8 = (e % (D / 8)) * 8;    // values: column fastest
          const uint4 zero = make_uint4(0, 0, 0, 0);
          kraw[i] = e < kVecs && kj < nk ? *reinterpret_cast<const uint4*>(krow[kj] + kc8) : zero;
          vraw[i] = e < kVecs && vj < nk ? *reinterpret_cast<const uint4*>(vrow[vj] + vc8) : zero;
        }
#pragma unroll
        for (int i = 0; i < kPerThread; ++i) {
          const int e = tid + i * kThreads;
          if (e >= kVecs) break;
          const int kj = e % kKeyTile, kc8 = (e / kKeyTile) * 8;
          const int vj = e / (D / 8), vc8 = (e % (D / 8)) * 8;
          float f[8];
          UnpackBf16x8(kraw[i], f);
#pragma unroll
          for (int u = 0; u < 8; ++u) kt[(kc8 + u) * kLdk + kj] = f[u];
          UnpackBf16x8(vraw[i], f);
          *reinterpret_cast<float4*>(&vs[vj * D + vc8]) = make_float4(f[0], f[1], f[2], f[3]);
          *reinterpret_cast<float4*>(&vs[vj * D + vc8 + 4]) = make_float4(f[4], f[5], f[6], f[7]);
        }
        __syncthreads();
        if (active) {
          float acc[kRpt][4];
#pragma unroll
          for (int x = 0; x < kRpt; ++x)
#pragma unroll
            for (int y = 0; y < 4; ++y) acc[x][y] = 0.0f;
#pragma unroll 4
          for (int k = 0; k < D; ++k) {
            float qv[kRpt], kv[4];
            LoadRow(&qt[k * kLdq + ty * kRpt], qv);
            LoadRow(&kt[k * kLdk + tx * 4], kv);
#pragma unroll
            for (int x = 0; x < kRpt; ++x)
#pragma unroll
              for (int y = 0; y < 4; ++y) acc[x][y] += qv[x] * kv[y];
          }
#pragma unroll
          for (int x = 0; x < kRpt; ++x) {
            const int r = ty * kRpt + x, t = r / hg;
            const bool selects =
                r < rows && (a.selected == nullptr ||
                             ((tok_bits[t * a.words + w] >> bit) & 1u) != 0);
            const int64_t p = p_lo + t;
#pragma unroll
            for (int y = 0; y < 4; ++y) {
              const int j = tx * 4 + y;
              const bool valid = selects && j < nk && tau0 + j <= p;
              pt[j * kLdp + r] = valid ? acc[x][y] * a.scale : -INFINITY;
            }
          }
        }
        __syncthreads();
        {  // Online softmax: S::kTpr consecutive threads per row, S::kKpt keys each.
          const int r = tid / S::kTpr, part = tid % S::kTpr;
          const int j0 = part * S::kKpt;
          float mx = -INFINITY;
          for (int j = j0; j < j0 + S::kKpt; ++j) mx = fmaxf(mx, pt[j * kLdp + r]);
#pragma unroll
          for (int off = 1; off < S::kTpr; off <<= 1) {
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
          }
          const float m_old = row_m[r];
          const float m_new = fmaxf(m_old, mx);
          float corr = 1.0f, sum = 0.0f;
          if (m_new != -INFINITY) {
            corr = expf(m_old - m_new);
            for (int j = j0; j < j0 + S::kKpt; ++j) {
              const float e = expf(pt[j * kLdp + r] - m_new);
              pt[j * kLdp + r] = e;
              sum += e;
            }
          } else {
            for (int j = j0; j < j0 + S::kKpt; ++j) pt[j * kLdp + r] = 0.0f;
          }
#pragma unroll
          for (int off = 1; off < S::kTpr; off <<= 1) {
            sum += __shfl_xor_sync(0xffffffffu, sum, off);
          }
          __syncwarp();  // every lane of the row has read row_m before it changes
          if (part == 0) {
            row_m[r] = m_new;
            row_l[r] = row_l[r] * corr + sum;
            row_c[r] = corr;
          }
        }
        __syncthreads();
        if (active) {
#pragma unroll
          for (int x = 0; x < kRpt; ++x) {
            const float c = row_c[ty * kRpt + x];
#pragma unroll
            for (int y = 0; y < kCols; ++y) o[x][y] *= c;
          }
          for (int j = 0; j < nk; ++j) {
            float pv[kRpt], vv[kCols];
            LoadRow(&pt[j * kLdp + ty * kRpt], pv);
            LoadRow(&vs[j * D + tx * kCols], vv);
#pragma unroll
            for (int x = 0; x < kRpt; ++x)
#pragma unroll
              for (int y = 0; y < kCols; ++y) o[x][y] += pv[x] * vv[y];
          }
        }
        __syncthreads();
      }
    }
  }
  if (!active) return;
  if (a.splits > 1) {
#pragma unroll
    for (int x = 0; x < kRpt; ++x) {
      const int r = ty * kRpt + x;
      if (r >= rows) continue;
      const int64_t row = ((split * a.num_tokens + t0 + r / hg) * a.num_q_heads) + g * hg + r % hg;
      float* dst = a.part_o + row * D + tx * kCols;
#pragma unroll
      for (int y = 0; y < kCols; ++y) dst[y] = o[x][y];
      if (tx == 0) {
        a.part_ml[2 * row] = row_m[r];
        a.part_ml[2 * row + 1] = row_l[r];
      }
    }
    return;
  }
#pragma unroll
  for (int x = 0; x < kRpt; ++x) {
    const int r = ty * kRpt + x;
    if (r >= rows) continue;
    const int t = r / hg, hh = r % hg;
    const float inv = 1.0f / row_l[r];
    bf16* dst = a.out + (t0 + t) * a.out_stride + int64_t(g * hg + hh) * D + tx * kCols;
#pragma unroll
    for (int y = 0; y < kCols; ++y) dst[y] = FromFloat<bf16>(o[x][y] * inv);
  }
}

template <int D, int kRpt>
cudaError_t Launch(const Params& p, int64_t num_tiles, cudaStream_t stream) {
  const int max_smem = OptInDynamicSmem<SparseAttentionKernel<D, kRpt>>();
  const size_t smem =
      SmemFloats<D, kRpt>() * sizeof(float) + sizeof(uint32_t) * (p.tq + 1) * p.words;
  if (max_smem < 0 || smem > static_cast<size_t>(max_smem)) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(num_tiles), static_cast<unsigned>(p.num_groups),
                  static_cast<unsigned>(p.splits));
  if (cudaError_t e =
          LaunchAfterPrior((SparseAttentionKernel<D, kRpt>), grid, kThreads, smem, stream, p);
      e != cudaSuccess || p.splits == 1)
    return e;
  return CombineSplits(p.part_o, p.part_ml, p.splits, p.num_tokens * p.num_q_heads, D,
                       p.num_q_heads, p.out, p.out_stride, stream);
}

template <int kRpt>
cudaError_t LaunchFor(int64_t head_dim, const Params& p, int64_t num_tiles, cudaStream_t stream) {
  switch (head_dim) {
    case 16:
      return Launch<16, kRpt>(p, num_tiles, stream);
    case 32:
      return Launch<32, kRpt>(p, num_tiles, stream);
    case 64:
      return Launch<64, kRpt>(p, num_tiles, stream);
    case 128:
      return Launch<128, kRpt>(p, num_tiles, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

// Tokens per tile for these arguments (see BlockSparseAttention).
int64_t TileTokens(const BlockSparseArgs& a, int64_t hg, int64_t max_rows) {
  const int64_t last = a.first_position + a.num_tokens - 1;
  const int64_t words = (last / a.block_size + 1 + 31) / 32;
  const int64_t cap =
      std::min<int64_t>(max_rows / hg, std::max<int64_t>(1, kBitmapWordsPerCta / words));
  int64_t tq = 1;
  for (int64_t d = 1; d <= std::min(cap, a.block_size); ++d) {
    if (a.block_size % d == 0) tq = d;
  }
  return tq;
}

bool Narrow(const BlockSparseArgs& a) {
  return a.selected != nullptr && a.num_q_heads / a.num_groups <= Shape<1>::kRows;
}

}  // namespace

int BlockSparseSplits(const BlockSparseArgs& a) {
  if (a.num_tokens == 0 || a.num_groups <= 0 || BlockSparseUsesTensorCores(a)) return 1;
  const int64_t most = a.max_splits > 0 ? std::min(a.max_splits, kMaxSplits) : kMaxSplits;
  if (BlockSparseDecodeUsesTensorCores(a)) {
    // One-warp CTAs, one per (split, group), each ~3 of the token's blocks so that a block's
    // copy overlaps the one before: 20.2 us at 32 splits against 24.2 at 64 and 24.3 at 16
    // for a 96-block selection (H200, tome_decode_kernels_bench).
    return static_cast<int>(std::clamp<int64_t>(a.topk_total / 3, 1, most));
  }
  const int64_t hg = a.num_q_heads / a.num_groups;
  const int64_t tq = TileTokens(a, hg, Narrow(a) ? Shape<1>::kRows : Shape<8>::kRows);
  const int64_t last = a.first_position + a.num_tokens - 1;
  const int64_t ctas = (last / tq - a.first_position / tq + 1) * a.num_groups;
  // Few tiles (decode, short calls): split each tile's blocks so ~2 CTAs run per SM (a decode
  // step's 96 blocks a group: 1-2 per CTA; each split costs its partial's write and combine).
  return static_cast<int>(std::clamp<int64_t>(2 * NumSms() / ctas, 1, most));
}

size_t BlockSparseScratchBytes(const BlockSparseArgs& a) {
  const int64_t splits = BlockSparseSplits(a);
  if (splits == 1) return 0;
  return sizeof(float) * splits * a.num_tokens * a.num_q_heads * (a.head_dim + 2);
}

cudaError_t BlockSparseAttention(const BlockSparseArgs& a, cudaStream_t stream) {
  if (a.num_tokens == 0) return cudaSuccess;
  if (a.num_groups <= 0 || a.num_groups > kMaxGroups || a.num_q_heads % a.num_groups != 0) {
    return cudaErrorInvalidValue;
  }
  if (BlockSparseUsesTensorCores(a)) return BlockSparseAttentionMma(a, stream);
  if (BlockSparseDecodeUsesTensorCores(a)) {
    return BlockSparseAttentionDecodeMma(a, BlockSparseSplits(a), stream);
  }
  const int64_t hg = a.num_q_heads / a.num_groups;
  // Selections: one token per CTA where the heads of a group fit 16 rows; dense: 128 rows.
  const bool narrow = Narrow(a);
  const int64_t max_rows = narrow ? Shape<1>::kRows : Shape<8>::kRows;
  if (hg > max_rows) return cudaErrorInvalidValue;
  Params p{};
  p.q = a.q;
  p.q_stride = a.q_stride;
  p.first_position = a.first_position;
  p.num_tokens = a.num_tokens;
  p.block_size = a.block_size;
  p.topk = a.topk_total;
  p.hg = static_cast<int>(hg);
  p.num_groups = static_cast<int>(a.num_groups);
  p.selected = a.selected;
  p.scale = a.scale;
  p.out = a.out;
  p.out_stride = a.out_stride;
  for (int64_t g = 0; g < a.num_groups; ++g) {
    p.keys.g[g] = a.keys[g];
    p.values.g[g] = a.values[g];
  }
  const int64_t last = a.first_position + a.num_tokens - 1;
  p.words = static_cast<int>((last / a.block_size + 1 + 31) / 32);
  // Tokens per tile: a divisor of the block size (tiles never straddle query blocks) within
  // the row budget and kBitmapWordsPerCta.
  const int64_t tq = TileTokens(a, hg, max_rows);
  p.tq = static_cast<int>(tq);
  const int64_t num_tiles = last / tq - a.first_position / tq + 1;
  p.num_q_heads = static_cast<int>(a.num_q_heads);
  p.splits = BlockSparseSplits(a);
  if (p.splits > 1) {
    if (a.scratch_bytes < BlockSparseScratchBytes(a)) return cudaErrorInvalidValue;
    p.part_o = static_cast<float*>(a.scratch);
    p.part_ml = p.part_o + p.splits * a.num_tokens * a.num_q_heads * a.head_dim;
  }
  return narrow ? LaunchFor<1>(a.head_dim, p, num_tiles, stream)
                : LaunchFor<8>(a.head_dim, p, num_tiles, stream);
}

}  // namespace tome::kernels::cuda
