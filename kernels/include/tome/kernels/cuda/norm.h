#pragma once

#include "tome/kernels/cuda/types.h"

namespace tome::kernels::cuda {

// In-place RMSNorm of each n-element group (`groups` per row, rows `row_stride` apart):
// x = bf16(bf16(x · r) · w) with r = 1/sqrt(mean(x²) + eps) in fp32 — the cast back to bf16
// comes before the weight (SALA-MODEL.md §3.2). w is fp32 [n].
cudaError_t RmsNorm(bf16* x, const float* w, int64_t rows, int64_t groups, int64_t n,
                    int64_t row_stride, float eps, cudaStream_t stream);
cudaError_t RmsNorm(float* x, const float* w, int64_t rows, int64_t groups, int64_t n,
                    int64_t row_stride, float eps, cudaStream_t stream);

}  // namespace tome::kernels::cuda
