#include "tome/kernels/cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <atomic>

#ifdef TOME_HAVE_CBLAS
#include <cblas.h>
#endif

namespace tome::kernels::cpu {
namespace {

std::atomic<int> g_num_threads{0};

#ifndef TOME_HAVE_CBLAS
// Portable fallback: rows of y in parallel, 4-row x 1-col register tiles over k.
void PortableMatMulTransB(const float* x, const float* w, float* y, int64_t m, int64_t n,
                          int64_t k, float beta, int64_t ldx, int64_t ldw, int64_t ldy) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const float* xr = x + i * ldx;
      const float* wr = w + j * ldw;
      float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
      for (int64_t l = 0; l < k; ++l) acc += xr[l] * wr[l];
      float* out = y + i * ldy + j;
      *out = (beta == 0.0f ? 0.0f : beta * *out) + acc;
    }
  }
}
#endif

}  // namespace

void MatMulTransB(const float* x, const float* w, float* y, int64_t m, int64_t n, int64_t k,
                  float beta, int64_t ldx, int64_t ldw, int64_t ldy) {
  if (ldx == 0) ldx = k;
  if (ldw == 0) ldw = k;
  if (ldy == 0) ldy = n;
  if (m == 0 || n == 0) return;
#ifdef TOME_HAVE_CBLAS
  if (m == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, w, ldw, x, 1, beta, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, ldx, w, ldw, beta, y,
              ldy);
#else
  PortableMatMulTransB(x, w, y, m, n, k, beta, ldx, ldw, ldy);
#endif
}

void MatMul(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k, float beta,
            int64_t lda, int64_t ldb, int64_t ldc) {
  if (m == 0 || n == 0) return;
#ifdef TOME_HAVE_CBLAS
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb, beta, c,
              ldc);
#else
  for (int64_t i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) ci[j] = beta == 0.0f ? 0.0f : beta * ci[j];
    for (int64_t l = 0; l < k; ++l) {
      const float av = a[i * lda + l];
      const float* bl = b + l * ldb;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) ci[j] += av * bl[j];
    }
  }
#endif
}

void SetNumThreads(int num_threads) {
  if (num_threads <= 0) num_threads = omp_get_num_procs();
  g_num_threads = num_threads;
  omp_set_num_threads(num_threads);
#ifdef TOME_HAVE_CBLAS
  openblas_set_num_threads(num_threads);
#endif
}

int NumThreads() {
  int n = g_num_threads.load();
  return n > 0 ? n : omp_get_max_threads();
}

}  // namespace tome::kernels::cpu
