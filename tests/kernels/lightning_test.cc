// Lightning chunked prefill (kernels::cpu::LightningAttention) against the token-by-token
// recurrence, including partial last chunks and calls split at arbitrary points.
#include "tome/kernels/cpu/lightning.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace tome::kernels::cpu {
namespace {

struct Inputs {
  int64_t T, H, d;
  std::vector<float> q, k, v, slopes;
};

Inputs MakeInputs(int64_t T, int64_t H, int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  Inputs in{T, H, d, {}, {}, {}, {}};
  for (auto* v : {&in.q, &in.k, &in.v}) {
    v->resize(T * H * d);
    for (float& x : *v) x = n(rng);
  }
  for (int64_t h = 0; h < H; ++h) in.slopes.push_back(std::pow(2.0f, -8.0f * (h + 1) / H));
  return in;
}

double MaxRel(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, ref = 1e-6;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - b[i]));
    ref = std::max(ref, std::abs(double(b[i])));
  }
  return diff / ref;
}

class LightningTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(LightningTest, ChunkedEqualsRecurrent) {
  const int64_t T = GetParam(), H = 4, d = 16;
  const Inputs in = MakeInputs(T, H, d, 1000 + T);
  const float scale = 1.0f / std::sqrt(float(d));
  std::vector<float> state_a(H * d * d, 0.0f), state_b(H * d * d, 0.0f);
  std::vector<float> out_a(T * H * d), out_b(T * H * d);
  LightningAttention(in.q.data(), in.k.data(), in.v.data(), T, H, d, H * d, in.slopes.data(),
                     scale, state_a.data(), out_a.data(), H * d);
  LightningRecurrent(in.q.data(), in.k.data(), in.v.data(), T, H, d, H * d, in.slopes.data(),
                     scale, state_b.data(), out_b.data(), H * d);
  EXPECT_LT(MaxRel(out_a, out_b), 1e-5);
  EXPECT_LT(MaxRel(state_a, state_b), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Lengths, LightningTest, ::testing::Values(1, 5, 63, 64, 65, 130, 257));

TEST(LightningTest, SplitCallsEqualOneCall) {
  const int64_t T = 300, H = 2, d = 8;
  const Inputs in = MakeInputs(T, H, d, 7);
  const float scale = 0.5f;
  std::vector<float> state_one(H * d * d, 0.0f), out_one(T * H * d);
  LightningAttention(in.q.data(), in.k.data(), in.v.data(), T, H, d, H * d, in.slopes.data(),
                     scale, state_one.data(), out_one.data(), H * d);
  std::vector<float> state_split(H * d * d, 0.0f), out_split(T * H * d);
  const std::vector<int64_t> bounds = {0, 37, 101, 102, 250, T};
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    const int64_t start = bounds[i], n = bounds[i + 1] - bounds[i];
    LightningAttention(in.q.data() + start * H * d, in.k.data() + start * H * d,
                       in.v.data() + start * H * d, n, H, d, H * d, in.slopes.data(), scale,
                       state_split.data(), out_split.data() + start * H * d, H * d);
  }
  EXPECT_LT(MaxRel(out_split, out_one), 1e-5);
  EXPECT_LT(MaxRel(state_split, state_one), 1e-5);
}

// The MLX port's pitfall: decaying the carried state of a partial last chunk (length c) by
// the full-chunk factor γ^64 instead of γ^c. The correct state must differ from it by far
// more than rounding, or the tests above could not catch that bug.
TEST(LightningTest, PartialChunkPitfallIsDetectable) {
  const int64_t T = 100, H = 4, d = 16;  // chunks of 64 and 36
  const Inputs in = MakeInputs(T, H, d, 3);
  std::vector<float> state(H * d * d, 0.0f), out(T * H * d);
  LightningRecurrent(in.q.data(), in.k.data(), in.v.data(), T, H, d, H * d, in.slopes.data(),
                     0.25f, state.data(), out.data(), H * d);
  std::vector<float> over_decayed = state;
  for (int64_t h = 0; h < H; ++h) {
    const float extra = std::exp(-in.slopes[h] * (64 - 36));
    for (int64_t e = 0; e < d * d; ++e) over_decayed[h * d * d + e] *= extra;
  }
  EXPECT_GT(MaxRel(over_decayed, state), 1e-2);
}

TEST(LightningTest, StrongDecayUnderflowsCleanly) {
  // λ = 88: γ = e^-88 and γ^n underflow; results must stay finite and equal the recurrence.
  const int64_t T = 130, H = 1, d = 4;
  Inputs in = MakeInputs(T, H, d, 11);
  in.slopes = {88.0f};
  std::vector<float> s1(d * d, 0.0f), s2(d * d, 0.0f), o1(T * d), o2(T * d);
  LightningAttention(in.q.data(), in.k.data(), in.v.data(), T, H, d, d, in.slopes.data(), 1.0f,
                     s1.data(), o1.data(), d);
  LightningRecurrent(in.q.data(), in.k.data(), in.v.data(), T, H, d, d, in.slopes.data(), 1.0f,
                     s2.data(), o2.data(), d);
  for (float x : o1) ASSERT_TRUE(std::isfinite(x));
  EXPECT_LT(MaxRel(o1, o2), 1e-5);
}

}  // namespace
}  // namespace tome::kernels::cpu
