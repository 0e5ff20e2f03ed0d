// The vectorised exp helpers of the CPU kernels against their scalar definitions.
#include "vec_math.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace tome::kernels::cpu {
namespace {

uint32_t Bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

// Lane-wise FastExp gives the scalar FastExp's bits, over a sample of [-100, 100] (every
// 1001st float: every exponent, many mantissas), the clamp edges and the special values.
TEST(VecMathTest, VectorFastExpEqualsScalarBitForBit) {
  std::vector<float> xs = {0.0f, -0.0f, 88.72283f, 88.72284f, -87.33654f, -87.33655f,
                           std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::denorm_min()};
  for (float x = -100.0f; x < 100.0f;) {
    xs.push_back(x);
    uint32_t u = Bits(x);
    constexpr uint32_t kStep = 1001;
    u = x >= 0 ? u + kStep : (u >= 0x80000000u + kStep ? u - kStep : 0);  // -0 → +0
    std::memcpy(&x, &u, sizeof x);
  }
  while (xs.size() % kLanes != 0) xs.push_back(1.0f);
  int64_t mismatches = 0;
  for (size_t i = 0; i < xs.size(); i += kLanes) {
    const F16 e = FastExp(Load16(xs.data() + i));
    for (int64_t l = 0; l < kLanes; ++l) mismatches += Bits(e[l]) != Bits(FastExp(xs[i + l]));
  }
  EXPECT_EQ(mismatches, 0) << "of " << xs.size();
}

// The loop helpers, at lengths with and without a scalar tail.
TEST(VecMathTest, LoopHelpersMatchScalarLoops) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  for (int64_t n : {0, 1, 15, 16, 17, 64, 100}) {
    std::vector<float> x(n), acc(n), want_acc(n);
    for (float& v : x) v = dist(rng);
    for (int64_t j = 0; j < n; ++j) want_acc[j] = acc[j] = dist(rng);
    float want_max = -std::numeric_limits<float>::infinity();
    double want_sum = 0;
    for (int64_t j = 0; j < n; ++j) {
      want_max = std::max(want_max, x[j]);
      want_sum += FastExp(0.5f * x[j] - 1.0f);
      want_acc[j] += FastExp(0.5f * x[j] - 1.0f);
    }
    EXPECT_EQ(MaxOf(x.data(), n), want_max) << n;
    EXPECT_NEAR(SumExp(x.data(), n, 0.5f, 1.0f), want_sum, 1e-5 * want_sum) << n;
    AddExp(x.data(), n, 0.5f, 1.0f, acc.data());
    for (int64_t j = 0; j < n; ++j) EXPECT_EQ(acc[j], want_acc[j]) << n << " " << j;
    std::vector<float> y = x;
    const float sum = ExpInPlace(y.data(), n, 2.0f);
    double direct = 0;
    for (int64_t j = 0; j < n; ++j) {
      EXPECT_EQ(y[j], FastExp(x[j] - 2.0f)) << n << " " << j;
      direct += y[j];
    }
    EXPECT_NEAR(sum, direct, 1e-5 * direct) << n;
  }
}

}  // namespace
}  // namespace tome::kernels::cpu
