// InfLLM-v2 on the GPU: block summaries, stage-1 block selection and block-sparse
// attention. Semantics: docs/MODEL-SEMANTICS.md; reference: kernels::cpu (same names).
#pragma once

#include <cublas_v2.h>

#include "tome/kernels/cuda/types.h"
#include "tome/kernels/sparse_params.h"

namespace tome::kernels::cuda {

// out[w, :] = bf16(mean of rows [w·stride, w·stride + window) of keys), windows
// first_window .. first_window + num_windows - 1; fp32 accumulation.
cudaError_t WindowMeans(const DevicePagedRows& keys, int64_t first_window, int64_t num_windows,
                        int64_t window, int64_t stride, bf16* out, int64_t out_stride,
                        cudaStream_t stream);

// out[r, :] = rows.row(first_row + r) for r < n (out dense [n, width]).
cudaError_t GatherRows(const DevicePagedRows& rows, int64_t first_row, int64_t n, bf16* out,
                       cudaStream_t stream);

// rows.row(first_row + r) = src[r, :] for r < n (src rows src_stride elements apart). The
// view's pages must be writable (its pointers are const for the readers).
cudaError_t ScatterRows(const DevicePagedRows& rows, int64_t first_row, int64_t n,
                        const bf16* src, int64_t src_stride, cudaStream_t stream);

struct SelectBlocksArgs {
  const bf16* q = nullptr;  // [T, Hq, d], q_stride between tokens
  int64_t num_tokens = 0, num_q_heads = 0, num_groups = 0, head_dim = 0, q_stride = 0;
  int64_t first_position = 0;
  const DevicePagedRows* k1 = nullptr;  // host array of num_groups device views
  const DevicePagedRows* k2 = nullptr;
  SparseParams params;
  float scale = 1.0f;
  int32_t* selected = nullptr;  // [T, G, topk_total], ascending, -1 padded
  float* scores = nullptr;      // optional [T, G, topk_total] pooled scores (0 padded)
};

// Device scratch SelectBlocks needs for these arguments (bytes).
size_t SelectBlocksScratchBytes(const SelectBlocksArgs& args);

// Stage 1 + top-k (kernels::cpu::SelectBlocks semantics; group scores are rounded to bf16 as
// the reference stores them, ties to the lower block index). Query tiles are scored against
// the summaries with cuBLAS into a bounded fp32 scratch tile; a per-query kernel then forms
// LSE2, the head-group sums, the block max-pool and the top-k (radix select in shared
// memory), so no score matrix larger than one tile exists. `handle` must be bound to
// `stream`. cuBLAS failures return cudaErrorUnknown with *gemm_status set (if not null).
cudaError_t SelectBlocks(const SelectBlocksArgs& args, cublasHandle_t handle, void* scratch,
                         size_t scratch_bytes, cudaStream_t stream,
                         cublasStatus_t* gemm_status = nullptr);

struct BlockSparseArgs {
  const bf16* q = nullptr;  // [T, Hq, d]
  int64_t num_tokens = 0, num_q_heads = 0, num_groups = 0, head_dim = 0, q_stride = 0;
  int64_t first_position = 0;
  const DevicePagedRows* keys = nullptr;  // host array of num_groups device views
  const DevicePagedRows* values = nullptr;
  int64_t block_size = 64;
  const int32_t* selected = nullptr;  // [T, G, topk_total] (device) or null: all causal blocks
  int64_t topk_total = 0;
  float scale = 1.0f;
  bf16* out = nullptr;  // [T, Hq, d], out_stride between tokens
  int64_t out_stride = 0;
  // At most this many CTAs share a tile's blocks (0: BlockSparseSplits decides alone; the
  // decode-kernel benchmark compares split counts with it).
  int max_splits = 0;
  // Device scratch of BlockSparseScratchBytes(*this) bytes (partial outputs of split tiles).
  void* scratch = nullptr;
  size_t scratch_bytes = 0;
};

// How many CTAs share one tile's blocks: > 1 when there are too few tiles to fill the GPU
// (decode, short calls); their partial results are combined by a second kernel.
int BlockSparseSplits(const BlockSparseArgs& args);
size_t BlockSparseScratchBytes(const BlockSparseArgs& args);

// Whether BlockSparseAttention runs these arguments on tensor cores (prefill-sized calls,
// 8 to 16 heads a group, head_dim 64 or 128, 64-key blocks that are whole KV pages): bf16
// mma.sync with fp32 accumulators, probabilities rounded to bf16 for P·V. Otherwise SIMT
// fp32 (decode, short calls, small test shapes).
bool BlockSparseUsesTensorCores(const BlockSparseArgs& args);
// Whether a decode step's call (one token, with a selection, in those shapes) runs on tensor
// cores: its blocks split over one-warp CTAs, probabilities rounded to bf16 for P·V as above.
bool BlockSparseDecodeUsesTensorCores(const BlockSparseArgs& args);

// Flash-style (online softmax, fp32) causal attention over the selected blocks, token-level
// mask in the diagonal block; queries of one group and several consecutive tokens of one
// query block share each key/value tile (one token per CTA for selections of up to 16 heads
// a group on the SIMT path). head_dim 16, 32, 64 or 128.
cudaError_t BlockSparseAttention(const BlockSparseArgs& args, cudaStream_t stream);

}  // namespace tome::kernels::cuda
