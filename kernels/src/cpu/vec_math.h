// Small vectorisable math helpers for the CPU kernels (internal).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace tome::kernels::cpu {

// exp(x) to about 2 ulp for finite results, written without library calls or branches so
// that loops over it vectorise (std::exp does not without -ffast-math). exp(-inf) = 0,
// exp(x > 88.72) = +inf. Cephes' range reduction and polynomial.
inline float FastExp(float x) {
  const float kLog2e = 1.44269504088896341f;
  const float kC1 = 0.693359375f, kC2 = -2.12194440e-4f;
  float xc = x < -87.33654f ? -87.33654f : (x > 88.72283f ? 88.72283f : x);
  float n = std::floor(xc * kLog2e + 0.5f);
  float r = xc - n * kC1 - n * kC2;
  float z = r * r;
  float y = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
              4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float result = y * std::bit_cast<float>(bits);
  result = x < -87.33654f ? 0.0f : result;
  return x > 88.72283f ? std::numeric_limits<float>::infinity() : result;
}

inline float Dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// y += alpha · x
inline void Axpy(float alpha, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace tome::kernels::cpu
