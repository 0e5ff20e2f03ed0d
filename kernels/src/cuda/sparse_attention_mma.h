// The tensor-core block-sparse attention kernel (internal; BlockSparseAttention dispatches).
#pragma once

#include "tome/kernels/cuda/sparse_attention.h"

namespace tome::kernels::cuda {

// Runs BlockSparseAttention's math on tensor cores; cudaErrorInvalidValue unless
// BlockSparseUsesTensorCores(args).
cudaError_t BlockSparseAttentionMma(const BlockSparseArgs& args, cudaStream_t stream);

// Whether the arguments' shapes fit the tensor-core kernels, whatever the number of tokens:
// 8 to 16 heads a group, head_dim 64 or 128, 64-key blocks that are whole KV pages, 4-byte
// aligned q and out with even strides.
bool BlockSparseTensorCoreShapes(const BlockSparseArgs& args);

}  // namespace tome::kernels::cuda
