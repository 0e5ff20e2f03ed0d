#include "tests/testutil/test_models.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "checkpoint/presets.h"
#include "gtest/gtest.h"

namespace tome::testing {

engine::ModelConfig TinyConfig() { return tools::PresetConfig("tiny").value(); }

void WriteModel(const engine::ModelConfig& config, const std::string& dir, uint64_t seed,
                engine::TensorDType dtype, int shards) {
  engine::RandomCheckpointOptions options;
  options.seed = seed;
  options.dtype = dtype;
  options.num_shards = shards;
  options.linear_std = 0.08f;  // large enough that layers change the residual stream visibly
  const auto status = engine::WriteRandomCheckpoint(config, dir, options);
  ASSERT_TRUE(status.ok()) << status;
}

std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(3, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> out(n);
  for (auto& t : out) t = dist(rng);
  return out;
}

double MaxRelativeError(const std::vector<float>& a, const std::vector<float>& b, double floor) {
  if (a.size() != b.size()) return INFINITY;
  double max_ref = floor, max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) return INFINITY;
    max_ref = std::max(max_ref, std::abs(double(b[i])));
    max_diff = std::max(max_diff, std::abs(double(a[i]) - double(b[i])));
  }
  return max_diff / max_ref;
}

}  // namespace tome::testing
