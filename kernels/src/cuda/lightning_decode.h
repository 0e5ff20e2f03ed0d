// The one-token Lightning kernel (internal; Lightning dispatches decode steps to it).
#pragma once

#include "tome/kernels/cuda/types.h"

namespace tome::kernels::cuda {

// Lightning for a call of one token: S ← γ S + k vᵀ and o = scale·γ·qᵀS + scale·(q·k)·v, the
// chunked kernel's arithmetic for a chunk of one token (γ = exp(-slope) in double, as there).
// head_dim 16, 32, 64 or 128 (cudaErrorInvalidValue otherwise).
cudaError_t LightningDecode(const bf16* q, const bf16* k, const bf16* v, int64_t num_heads,
                            int64_t head_dim, const float* slopes, float scale, float* state,
                            bf16* out, cudaStream_t stream);

}  // namespace tome::kernels::cuda
