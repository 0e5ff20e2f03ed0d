// Small vectorisable math helpers for the CPU kernels (internal).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace tome::kernels::cpu {

// exp(x) to about 2 ulp for finite results, without library calls or branches. exp(-inf) = 0,
// exp(x > 88.72) = +inf. Cephes' range reduction and polynomial. GCC 12 does not vectorise
// loops over this (std::floor under -ftrapping-math, and jump threading of the clamps defeat
// if-conversion), so hot loops use the F16 overload below, which gives the same bits.
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

// 16 floats in GCC/Clang vector extensions: one AVX-512 register, or two AVX2 / four SSE
// registers on narrower targets. Arithmetic is lane-wise IEEE, as for scalars. These helpers
// are inline and internal to the kernel files that include this header, so GCC's note that
// their by-value vector ABI depends on AVX-512 (-Wpsabi, builds without -march=native, at
// every call site) does not apply; it stays off for those files.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
using F16 = float __attribute__((vector_size(64)));
using I16 = int32_t __attribute__((vector_size(64)));
inline constexpr int64_t kLanes = 16;

inline F16 Load16(const float* p) {
  F16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void Store16(float* p, const F16& v) { std::memcpy(p, &v, sizeof v); }
inline F16 Splat16(float x) { return F16{} + x; }
inline float Sum16(const F16& v) {
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}
inline float Max16(const F16& v) {
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = std::max(m, v[i]);
  return m;
}

// FastExp lane by lane, bit for bit (floor is truncation corrected by one below zero).
inline F16 FastExp(const F16& x) {
  const F16 lo = Splat16(-87.33654f), hi = Splat16(88.72283f);
  F16 xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const F16 fx = xc * 1.44269504088896341f + 0.5f;
  const F16 tr = __builtin_convertvector(__builtin_convertvector(fx, I16), F16);
  const F16 n = tr - (tr > fx ? Splat16(1.0f) : F16{});
  const F16 r = xc - n * 0.693359375f - n * -2.12194440e-4f;
  const F16 z = r * r;
  F16 y = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
            4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  const I16 bits = (__builtin_convertvector(n, I16) + 127) << 23;
  F16 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  F16 result = y * scale;
  result = x < lo ? F16{} : result;
  return x > hi ? Splat16(std::numeric_limits<float>::infinity()) : result;
}

// r[i] = Σ_lanes p[i] for 16 vectors: four rounds of pairwise lane exchange and add. Each
// round halves the partial sums per vector; fed in bit-reversed order, the sums come out in
// natural order.
inline F16 TransposeSum16(const F16* p) {
  constexpr int kBitReversed[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};
  F16 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i) {
    const F16 x = p[kBitReversed[2 * i]], y = p[kBitReversed[2 * i + 1]];
    a[i] = __builtin_shufflevector(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(x, y, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29,
                                   30, 31);
  }
  for (int i = 0; i < 4; ++i) {
    const F16 x = a[2 * i], y = a[2 * i + 1];
    b[i] = __builtin_shufflevector(x, y, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26,
                                   27) +
           __builtin_shufflevector(x, y, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30,
                                   31);
  }
  for (int i = 0; i < 2; ++i) {
    const F16 x = b[2 * i], y = b[2 * i + 1];
    c[i] = __builtin_shufflevector(x, y, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28,
                                   29) +
           __builtin_shufflevector(x, y, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30,
                                   31);
  }
  return __builtin_shufflevector(c[0], c[1], 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28,
                                 14, 30) +
         __builtin_shufflevector(c[0], c[1], 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29,
                                 15, 31);
}

// max_j x[j] (-inf when n = 0).
inline float MaxOf(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  int64_t j = 0;
  if (n >= kLanes) {
    F16 mv = Load16(x);
    for (j = kLanes; j + kLanes <= n; j += kLanes) {
      const F16 v = Load16(x + j);
      mv = v > mv ? v : mv;
    }
    m = Max16(mv);
  }
  for (; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

// Σ_j exp(mul · x[j] - sub).
inline float SumExp(const float* x, int64_t n, float mul, float sub) {
  F16 acc{};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) acc += FastExp(Load16(x + j) * mul - sub);
  float sum = Sum16(acc);
  for (; j < n; ++j) sum += FastExp(mul * x[j] - sub);
  return sum;
}

// acc[j] += exp(mul · x[j] - sub).
inline void AddExp(const float* x, int64_t n, float mul, float sub, float* acc) {
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    Store16(acc + j, Load16(acc + j) + FastExp(Load16(x + j) * mul - sub));
  }
  for (; j < n; ++j) acc[j] += FastExp(mul * x[j] - sub);
}

// x[j] = exp(x[j] - sub); returns Σ_j x[j].
inline float ExpInPlace(float* x, int64_t n, float sub) {
  F16 acc{};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    const F16 e = FastExp(Load16(x + j) - sub);
    Store16(x + j, e);
    acc += e;
  }
  float sum = Sum16(acc);
  for (; j < n; ++j) sum += x[j] = FastExp(x[j] - sub);
  return sum;
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
