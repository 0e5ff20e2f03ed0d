// The chunk-parallel tensor-core Lightning kernels (internal; Lightning dispatches).
#pragma once

#include <cstddef>

#include "tome/kernels/cuda/types.h"

namespace tome::kernels::cuda {

// Whether a call of this size and layout runs chunk-parallel on tensor cores.
bool LightningUsesTensorCores(int64_t num_tokens, int64_t head_dim, int64_t row_stride,
                              const void* q, const void* k, const void* v);

// Scratch of LightningMma: one D × D fp32 state per (head, chunk of 64 tokens).
size_t LightningMmaScratchBytes(int64_t num_tokens, int64_t num_heads, int64_t head_dim);

cudaError_t LightningMma(const bf16* q, const bf16* k, const bf16* v, int64_t num_tokens,
                         int64_t num_heads, int64_t head_dim, int64_t row_stride,
                         const float* slopes, float scale, float* state, bf16* out,
                         int64_t out_stride, void* scratch, size_t scratch_bytes,
                         cudaStream_t stream);

}  // namespace tome::kernels::cuda
