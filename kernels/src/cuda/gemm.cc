// cuBLAS is column-major: a row-major [r, c] matrix with row stride ld is the column-major
// [c, r] matrix with leading dimension ld. So row-major y = x · wᵀ is column-major
// yᵀ = w · xᵀ, i.e. gemm(op_T on w's [k, n] view, op_N on x's [k, m] view).
#include "tome/kernels/cuda/gemm.h"

namespace tome::kernels::cuda {
namespace {

cudaDataType_t CudaType(GemmType t) { return t == GemmType::kBF16 ? CUDA_R_16BF : CUDA_R_32F; }

}  // namespace

cublasStatus_t MatMulTransB(cublasHandle_t handle, const void* x, const void* w, GemmType in,
                            void* y, GemmType out, int64_t m, int64_t n, int64_t k, int64_t ldx,
                            int64_t ldw, int64_t ldy) {
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const float alpha = 1.0f, beta = 0.0f;
  return cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                      static_cast<int>(m), static_cast<int>(k), &alpha, w, CudaType(in),
                      static_cast<int>(ldw), x, CudaType(in), static_cast<int>(ldx), &beta, y,
                      CudaType(out), static_cast<int>(ldy), CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT);
}

cublasStatus_t BatchedScores(cublasHandle_t handle, const bf16* a, int64_t lda,
                             int64_t a_batch_stride, const bf16* b, int64_t ldb, float* c,
                             int64_t ldc, int64_t c_batch_stride, int64_t m, int64_t n,
                             int64_t k, int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  const float alpha = 1.0f, beta = 0.0f;
  // Row-major c_h = a_h · bᵀ is column-major c_hᵀ [n, m] = b[n, k] · a_hᵀ; b is shared
  // (batch stride 0).
  return cublasGemmStridedBatchedEx(
      handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
      static_cast<int>(k), &alpha, b, CUDA_R_16BF, static_cast<int>(ldb), 0, a, CUDA_R_16BF,
      static_cast<int>(lda), a_batch_stride, &beta, c, CUDA_R_32F, static_cast<int>(ldc),
      c_batch_stride, static_cast<int>(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

}  // namespace tome::kernels::cuda
