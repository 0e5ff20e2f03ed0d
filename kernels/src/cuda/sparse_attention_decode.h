// Stage-2 attention of a decode step on tensor cores (internal; BlockSparseAttention
// dispatches). One token: each KV group's selected blocks are split over CTAs of one warp,
// whose m16 tile is the group's heads; partial results are merged by CombineSplits.
#pragma once

#include "tome/kernels/cuda/sparse_attention.h"

namespace tome::kernels::cuda {

// `splits` CTAs per group; with splits > 1, args.scratch holds the partials
// (BlockSparseScratchBytes). cudaErrorInvalidValue unless BlockSparseDecodeUsesTensorCores.
cudaError_t BlockSparseAttentionDecodeMma(const BlockSparseArgs& args, int splits,
                                          cudaStream_t stream);

}  // namespace tome::kernels::cuda
