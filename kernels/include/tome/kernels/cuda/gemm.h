// Matrix products through cuBLAS (tensor cores; fp32 accumulation).
#pragma once

#include <cublas_v2.h>

#include "tome/kernels/cuda/types.h"

namespace tome::kernels::cuda {

enum class GemmType { kF32, kBF16 };

// y[m, n] = x[m, k] · w[n, k]ᵀ for row-major matrices with row strides ldx, ldw, ldy
// (elements). x and w share one type; y may be bf16 or fp32 (logits). `handle` must be bound
// to the caller's stream.
cublasStatus_t MatMulTransB(cublasHandle_t handle, const void* x, const void* w, GemmType in,
                            void* y, GemmType out, int64_t m, int64_t n, int64_t k, int64_t ldx,
                            int64_t ldw, int64_t ldy);

// For h < batch: c_h[m, n] = a_h[m, k] · bᵀ  with b [n, k] (ldb) shared by the batch,
// a_h = a + h · a_batch_stride (lda), c_h = c + h · c_batch_stride (ldc); bf16 in, fp32 out.
cublasStatus_t BatchedScores(cublasHandle_t handle, const bf16* a, int64_t lda,
                             int64_t a_batch_stride, const bf16* b, int64_t ldb, float* c,
                             int64_t ldc, int64_t c_batch_stride, int64_t m, int64_t n,
                             int64_t k, int64_t batch);

}  // namespace tome::kernels::cuda
