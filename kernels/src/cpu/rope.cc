#include "tome/kernels/cpu/rope.h"

#include <cmath>
#include <vector>

namespace tome::kernels::cpu {

void ApplyRope(float* x, int64_t num_tokens, int64_t num_heads, int64_t head_dim,
               int64_t row_stride, int64_t first_position, float theta) {
  const int64_t half = head_dim / 2;
  thread_local std::vector<float> inv_freq_storage;
  inv_freq_storage.resize(half);
  // A plain pointer: inside the parallel region the thread_local name is another thread's.
  float* const inv_freq = inv_freq_storage.data();
  for (int64_t i = 0; i < half; ++i) {
    inv_freq[i] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
  }
#pragma omp parallel for schedule(static) if (num_tokens > 16)
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float pos = static_cast<float>(first_position + t);
    float cos_v[512], sin_v[512];  // head_dim <= 1024 (checked by the engine's config)
    for (int64_t i = 0; i < half; ++i) {
      const float angle = pos * inv_freq[i];
      cos_v[i] = std::cos(angle);
      sin_v[i] = std::sin(angle);
    }
    for (int64_t h = 0; h < num_heads; ++h) {
      float* xh = x + t * row_stride + h * head_dim;
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        const float a = xh[i], b = xh[i + half];
        xh[i] = a * cos_v[i] - b * sin_v[i];
        xh[i + half] = b * cos_v[i] + a * sin_v[i];
      }
    }
  }
}

}  // namespace tome::kernels::cpu
