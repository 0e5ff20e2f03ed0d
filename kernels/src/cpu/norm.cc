#include "tome/kernels/cpu/norm.h"

#include <cmath>

namespace tome::kernels::cpu {

void RmsNorm(float* x, const float* w, int64_t rows, int64_t groups, int64_t n,
             int64_t row_stride, float eps) {
#pragma omp parallel for collapse(2) schedule(static) if (rows * groups * n > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      float* xg = x + r * row_stride + g * n;
      float sum_sq = 0.0f;
#pragma omp simd reduction(+ : sum_sq)
      for (int64_t i = 0; i < n; ++i) sum_sq += xg[i] * xg[i];
      const float inv = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) xg[i] = xg[i] * inv * w[i];
    }
  }
}

}  // namespace tome::kernels::cpu
