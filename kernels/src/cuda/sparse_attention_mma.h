// The tensor-core block-sparse attention kernel (internal; BlockSparseAttention dispatches).
#pragma once

#include "tome/kernels/cuda/sparse_attention.h"

namespace tome::kernels::cuda {

// Runs BlockSparseAttention's math on tensor cores; cudaErrorInvalidValue unless
// BlockSparseUsesTensorCores(args).
cudaError_t BlockSparseAttentionMma(const BlockSparseArgs& args, cudaStream_t stream);

}  // namespace tome::kernels::cuda
