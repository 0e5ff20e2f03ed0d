#include "tome/kernels/cpu/elementwise.h"

#include "vec_math.h"

namespace tome::kernels::cpu {

void SiluMul(const float* gate, const float* up, int64_t in_stride, float* out,
             int64_t out_stride, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = gate + r * in_stride;
    const float* u = up + r * in_stride;
    float* o = out + r * out_stride;
    int64_t c = 0;
    for (; c + kLanes <= cols; c += kLanes) {
      const F16 gv = Load16(g + c);
      Store16(o + c, gv / (1.0f + FastExp(-gv)) * Load16(u + c));
    }
    for (; c < cols; ++c) o[c] = g[c] / (1.0f + FastExp(-g[c])) * u[c];
  }
}

void SigmoidMul(float* x, int64_t x_stride, const float* z, int64_t z_stride, int64_t rows,
                int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * x_stride;
    const float* zr = z + r * z_stride;
    int64_t c = 0;
    for (; c + kLanes <= cols; c += kLanes) {
      Store16(xr + c, Load16(xr + c) * (1.0f / (1.0f + FastExp(-Load16(zr + c)))));
    }
    for (; c < cols; ++c) xr[c] *= 1.0f / (1.0f + FastExp(-zr[c]));
  }
}

void AddScaled(float* h, const float* x, float alpha, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) h[i] += alpha * x[i];
}

void Scale(float* x, float alpha, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

void EmbeddingLookup(const float* table, const int32_t* ids, int64_t num_tokens, int64_t dim,
                     float scale, float* out) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* row = table + static_cast<int64_t>(ids[t]) * dim;
    float* o = out + t * dim;
#pragma omp simd
    for (int64_t i = 0; i < dim; ++i) o[i] = scale * row[i];
  }
}

}  // namespace tome::kernels::cpu
