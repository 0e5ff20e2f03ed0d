// CPU matrix products (fp32, row-major). The reference implementation for the
// CUDA GEMMs, and the engine's CPU backend. Uses OpenBLAS when built with
// TOME_BLAS, else a portable blocked loop parallelised with OpenMP.
#pragma once

#include <cstdint>

namespace tome::kernels::cpu {

// y[m, n] = x[m, k] · w[n, k]ᵀ + beta · y   (w in the PyTorch nn.Linear layout).
// `ldx`, `ldw`, `ldy` are row strides in elements (0 = dense: k, k, n).
void MatMulTransB(const float* x, const float* w, float* y, int64_t m, int64_t n, int64_t k,
                  float beta = 0.0f, int64_t ldx = 0, int64_t ldw = 0, int64_t ldy = 0);

// c[m, n] = a[m, k] · b[k, n] + beta · c  (row strides lda, ldb, ldc).
void MatMul(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k, float beta,
            int64_t lda, int64_t ldb, int64_t ldc);

// Number of threads the CPU kernels use (OpenMP and BLAS); <= 0 means every core.
// Set once at startup.
void SetNumThreads(int num_threads);
int NumThreads();

}  // namespace tome::kernels::cpu
