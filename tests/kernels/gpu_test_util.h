// Helpers for the CUDA backend tests: device detection and bf16-exact random data.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tome/engine/safetensors.h"

namespace tome::testing {

// True when a CUDA device is usable (the tests skip otherwise).
inline bool HaveGpu() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  cudaGetLastError();
  return ok;
}

inline float RoundBf16(float x) {
  return engine::BFloat16ToFloat(engine::FloatToBFloat16(x));
}

// n normal samples, rounded to bf16 so that fp32 and bf16 copies hold the same values.
inline std::vector<float> RandomValues(int64_t n, uint64_t seed, float stddev = 1.0f,
                                       float mean = 0.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = RoundBf16(dist(rng));
  return v;
}

struct Errors {
  double rel = 0;       // ‖got − want‖ / ‖want‖
  double max_abs = 0;   // max |got − want|
  int64_t nonfinite = 0;  // got NaN/Inf where want is finite
};

inline Errors Measure(const std::vector<float>& got, const std::vector<float>& want) {
  Errors e;
  double diff2 = 0, ref2 = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    if (!std::isfinite(want[i])) continue;
    if (!std::isfinite(got[i])) {
      ++e.nonfinite;
      continue;
    }
    const double d = double(got[i]) - want[i];
    diff2 += d * d;
    ref2 += double(want[i]) * want[i];
    e.max_abs = std::max(e.max_abs, std::abs(d));
  }
  e.rel = std::sqrt(diff2) / std::max(std::sqrt(ref2), 1e-30);
  return e;
}

// Norm-wise relative error at most `tol`, no NaN/Inf; prints the numbers (device logs).
inline void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, double tol,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const Errors e = Measure(got, want);
  std::printf("    %-56s rel %.3g  max_abs %.3g\n", what.c_str(), e.rel, e.max_abs);
  EXPECT_EQ(e.nonfinite, 0) << what;
  EXPECT_LE(e.rel, tol) << what << " (max abs " << e.max_abs << ")";
}

}  // namespace tome::testing
