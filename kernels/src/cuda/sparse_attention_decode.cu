// Decode-step block-sparse attention on tensor cores. CTA (split, group) is one warp: it reads
// the token's selection for the group (ascending; entries past the causal limit, padding and
// repeats dropped), takes its share of the blocks, copies each block's K and V to shared
// memory one block ahead (cp.async) and attends it with AttendBlock64 (attention_block.cuh),
// then writes its unnormalised output, running maxima and normalisers for CombineSplits (or
// the output itself when there is one split). The SIMT kernel, one fp32 row per thread, read
// ~1.2 MB of shared memory for each 64-key block of a decode step: ~10 us a block.
#include <algorithm>

#include "attention_block.cuh"
#include "common.cuh"
#include "mma.cuh"
#include "sparse_attention_decode.h"
#include "sparse_attention_mma.h"
#include "split_combine.h"

namespace tome::kernels::cuda {
namespace {

constexpr int kBlock = 64;
constexpr int kStages = 2;

struct DecodeParams {
  const bf16* q;  // the token's [Hq, d]
  int64_t position;
  int topk, hg, num_q_heads, splits;
  const int32_t* selected;  // [G, topk]
  float scale_log2;
  bf16* out;       // the token's [Hq, d] (written by CombineSplits when splits > 1)
  float* part_o;   // splits > 1: [splits, Hq, d]
  float* part_ml;  // [splits, Hq, 2]
  PagedGroups keys, values;
};

template <int D>
__global__ void __launch_bounds__(32) DecodeMmaKernel(DecodeParams a) {
  WaitForPriorKernels();
  constexpr int kChunks = D / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* kbuf = reinterpret_cast<bf16*>(smem);  // [kStages][kBlock][D]
  bf16* vbuf = kbuf + kStages * kBlock * D;
  int32_t* blocks = reinterpret_cast<int32_t*>(vbuf + kStages * kBlock * D);  // [topk]
  const int lane = threadIdx.x, split = blockIdx.x, g = blockIdx.y;
  const int gi = lane / 4, c = lane % 4;
  const int64_t p = a.position, bq = p / kBlock;
  const DevicePagedRows keys = a.keys.g[g], values = a.values.g[g];

  // The group's blocks the token attends, ascending, compacted by ballots.
  const int32_t* sel = a.selected + int64_t{g} * a.topk;
  int count = 0;
  for (int j0 = 0; j0 < a.topk; j0 += 32) {
    const int j = j0 + lane;
    const int32_t b = j < a.topk ? sel[j] : -1;
    const int32_t before = j > 0 && j < a.topk ? sel[j - 1] : -1;
    const bool keep = b >= 0 && b <= bq && b != before;
    const unsigned kept = __ballot_sync(0xffffffffu, keep);
    if (keep) blocks[count + __popc(kept & ((1u << lane) - 1u))] = b;
    count += __popc(kept);
  }
  __syncwarp();
  const int first = static_cast<int>(int64_t{count} * split / a.splits);
  const int end = static_cast<int>(int64_t{count} * (split + 1) / a.splits);

  auto load = [&](int i) {  // block i of the walk into buffer i % kStages
    const int64_t b = blocks[i];
    CopyBlock64<D>(keys.pages[b], values.pages[b], min(int64_t{kBlock}, p + 1 - kBlock * b),
                   kbuf + (i % kStages) * kBlock * D, vbuf + (i % kStages) * kBlock * D, lane, 32);
    CpAsyncCommit();
  };
  if (first < end) load(first);
  uint32_t qf[D / 16][4];
  LoadQuery<D>(a.q + int64_t{g} * a.hg * D, a.hg, true, qf);
  WarpRows<D> st;
  st.Init();
  for (int i = first; i < end; ++i) {
    if (i + 1 < end) {
      load(i + 1);  // its buffer was last read in iteration i - 1
    } else {
      CpAsyncCommit();  // an empty group keeps the wait below uniform
    }
    CpAsyncWait<1>();
    __syncwarp();  // every lane's copies of block i are visible to the warp
    const int64_t b = blocks[i];
    AttendBlock64<D>(qf, kbuf + (i % kStages) * kBlock * D, vbuf + (i % kStages) * kBlock * D,
                     a.scale_log2, b == bq ? static_cast<int>(p - kBlock * b) : kBlock - 1, st);
    __syncwarp();  // done reading the buffer before the next iteration's copy overwrites it
  }
  st.SumRows();
  const int64_t head0 = int64_t{g} * a.hg + gi, head1 = head0 + 8;
  const bool r0 = gi < a.hg, r1 = gi + 8 < a.hg;
  if (a.splits == 1) {
    const float inv0 = st.l0 > 0.0f ? 1.0f / st.l0 : 0.0f;
    const float inv1 = st.l1 > 0.0f ? 1.0f / st.l1 : 0.0f;
#pragma unroll
    for (int n = 0; n < kChunks; ++n) {
      if (r0) {
        *reinterpret_cast<uint32_t*>(a.out + head0 * D + 8 * n + 2 * c) =
            PackBf16(st.o[n][0] * inv0, st.o[n][1] * inv0);
      }
      if (r1) {
        *reinterpret_cast<uint32_t*>(a.out + head1 * D + 8 * n + 2 * c) =
            PackBf16(st.o[n][2] * inv1, st.o[n][3] * inv1);
      }
    }
    return;
  }
  const int64_t row0 = int64_t{split} * a.num_q_heads + head0, row1 = row0 + 8;
#pragma unroll
  for (int n = 0; n < kChunks; ++n) {
    if (r0) {
      *reinterpret_cast<float2*>(a.part_o + row0 * D + 8 * n + 2 * c) =
          make_float2(st.o[n][0], st.o[n][1]);
    }
    if (r1) {
      *reinterpret_cast<float2*>(a.part_o + row1 * D + 8 * n + 2 * c) =
          make_float2(st.o[n][2], st.o[n][3]);
    }
  }
  if (c == 0) {  // maxima in natural-log units for CombineSplits (-inf: nothing attended)
    constexpr float kLn2 = 0.6931471805599453f;
    if (r0) a.part_ml[2 * row0] = st.m0 * kLn2, a.part_ml[2 * row0 + 1] = st.l0;
    if (r1) a.part_ml[2 * row1] = st.m1 * kLn2, a.part_ml[2 * row1 + 1] = st.l1;
  }
}

template <int D>
cudaError_t Launch(const DecodeParams& p, int num_groups, int64_t head_dim, cudaStream_t stream) {
  const int max_smem = OptInDynamicSmem<DecodeMmaKernel<D>>();
  const size_t smem = sizeof(bf16) * 2 * kStages * kBlock * D + sizeof(int32_t) * p.topk;
  if (max_smem < 0 || smem > static_cast<size_t>(max_smem)) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(p.splits), static_cast<unsigned>(num_groups));
  if (cudaError_t e = LaunchAfterPrior(DecodeMmaKernel<D>, grid, 32, smem, stream, p);
      e != cudaSuccess || p.splits == 1)
    return e;
  return CombineSplits(p.part_o, p.part_ml, p.splits, p.num_q_heads, head_dim, p.num_q_heads, p.out,
                       0, stream);
}

}  // namespace

bool BlockSparseDecodeUsesTensorCores(const BlockSparseArgs& a) {
  return a.num_tokens == 1 && a.selected != nullptr && a.topk_total > 0 &&
         BlockSparseTensorCoreShapes(a);
}

cudaError_t BlockSparseAttentionDecodeMma(const BlockSparseArgs& a, int splits,
                                          cudaStream_t stream) {
  if (!BlockSparseDecodeUsesTensorCores(a) || splits < 1 || splits > kMaxSplits) {
    return cudaErrorInvalidValue;
  }
  DecodeParams p{};
  p.q = a.q;
  p.position = a.first_position;
  p.topk = static_cast<int>(a.topk_total);
  p.hg = static_cast<int>(a.num_q_heads / a.num_groups);
  p.num_q_heads = static_cast<int>(a.num_q_heads);
  p.splits = splits;
  p.selected = a.selected;
  p.scale_log2 = a.scale * 1.4426950408889634f;
  p.out = a.out;
  if (splits > 1) {
    const size_t need = sizeof(float) * splits * a.num_q_heads * (a.head_dim + 2);
    if (a.scratch == nullptr || a.scratch_bytes < need) return cudaErrorInvalidValue;
    p.part_o = static_cast<float*>(a.scratch);
    p.part_ml = p.part_o + int64_t{splits} * a.num_q_heads * a.head_dim;
  }
  for (int64_t g = 0; g < a.num_groups; ++g) {
    p.keys.g[g] = a.keys[g];
    p.values.g[g] = a.values[g];
  }
  const int groups = static_cast<int>(a.num_groups);
  return a.head_dim == 64 ? Launch<64>(p, groups, 64, stream) : Launch<128>(p, groups, 128, stream);
}

}  // namespace tome::kernels::cuda
