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

// RmsNorm of each n-element row (one group) and then the output gate, x = bf16(x ·
// bf16(sigmoid(z))), in one pass: the same bits as RmsNorm followed by SigmoidMul. For rows of
// 1024 to 8192 elements in 16-byte vectors (RmsNormSigmoidMulFuses); others return
// cudaErrorInvalidValue.
bool RmsNormSigmoidMulFuses(const bf16* x, int64_t x_stride, const float* w, int64_t n,
                            const bf16* z, int64_t z_stride);
cudaError_t RmsNormSigmoidMul(bf16* x, int64_t x_stride, const float* w, int64_t rows, int64_t n,
                              const bf16* z, int64_t z_stride, float eps, cudaStream_t stream);

// Residual add and the next RMSNorm in one pass over each n-element row: h += bf16(alpha·x)
// (AddScaled; x null: h unchanged), then out = RmsNorm(h)·w as RmsNorm computes it (the same
// bits as AddScaled, a copy and RmsNorm). For rows of 1024 to 8192 elements in 16-byte
// vectors (ResidualRmsNormFuses); others return cudaErrorInvalidValue.
bool ResidualRmsNormFuses(const bf16* h, int64_t h_stride, const bf16* x, int64_t x_stride,
                          const float* w, int64_t n, const bf16* out, int64_t out_stride);
cudaError_t ResidualRmsNorm(bf16* h, int64_t h_stride, const bf16* x, int64_t x_stride, float alpha,
                            const float* w, int64_t rows, int64_t n, bf16* out, int64_t out_stride,
                            float eps, cudaStream_t stream);

}  // namespace tome::kernels::cuda
