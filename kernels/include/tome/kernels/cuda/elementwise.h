// Element-wise CUDA ops over [rows, cols] row-strided matrices. Activations are bf16 with
// fp32 math; each op rounds where the bf16 reference does (SALA-MODEL.md §3: each PyTorch op
// stores bf16). The float overloads compute the same function without the roundings.
#pragma once

#include "tome/kernels/cuda/types.h"

namespace tome::kernels::cuda {

// out[t, :] = bf16(scale · table[ids[t], :]); ids on the device.
cudaError_t Embedding(const bf16* table, const int32_t* ids, int64_t num_tokens, int64_t dim,
                      float scale, bf16* out, int64_t out_stride, cudaStream_t stream);
cudaError_t Embedding(const float* table, const int32_t* ids, int64_t num_tokens, int64_t dim,
                      float scale, float* out, int64_t out_stride, cudaStream_t stream);

// out = bf16(bf16(silu(gate)) · up)   (SwiGLU, two PyTorch ops).
cudaError_t SiluMul(const bf16* gate, const bf16* up, int64_t in_stride, bf16* out,
                    int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream);
cudaError_t SiluMul(const float* gate, const float* up, int64_t in_stride, float* out,
                    int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream);

// x = bf16(x · bf16(sigmoid(z)))   (output gates).
cudaError_t SigmoidMul(bf16* x, int64_t x_stride, const bf16* z, int64_t z_stride, int64_t rows,
                       int64_t cols, cudaStream_t stream);
cudaError_t SigmoidMul(float* x, int64_t x_stride, const float* z, int64_t z_stride,
                       int64_t rows, int64_t cols, cudaStream_t stream);

// h = bf16(h + bf16(alpha · x))   (µP residual: scale, then add).
cudaError_t AddScaled(bf16* h, int64_t h_stride, const bf16* x, int64_t x_stride, float alpha,
                      int64_t rows, int64_t cols, cudaStream_t stream);
cudaError_t AddScaled(float* h, int64_t h_stride, const float* x, int64_t x_stride, float alpha,
                      int64_t rows, int64_t cols, cudaStream_t stream);

// Fills elements of `elem_bytes` (2 or 4) with a bit pattern.
cudaError_t FillPattern(void* dst, int elem_bytes, int64_t stride, int64_t rows, int64_t cols,
                        uint32_t pattern, cudaStream_t stream);

// dst = convert(src) between fp32 and bf16 (round to nearest even).
cudaError_t Convert(const float* src, int64_t src_stride, bf16* dst, int64_t dst_stride,
                    int64_t rows, int64_t cols, cudaStream_t stream);
cudaError_t Convert(const bf16* src, int64_t src_stride, float* dst, int64_t dst_stride,
                    int64_t rows, int64_t cols, cudaStream_t stream);

// dst[r, c] = mean + stddev · HashedNormal(seed, r · cols + c)  (tome/kernels/random.h).
cudaError_t FillRandomNormal(bf16* dst, int64_t stride, int64_t rows, int64_t cols,
                             uint64_t seed, float mean, float stddev, cudaStream_t stream);
cudaError_t FillRandomNormal(float* dst, int64_t stride, int64_t rows, int64_t cols,
                             uint64_t seed, float mean, float stddev, cudaStream_t stream);

}  // namespace tome::kernels::cuda
