#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tome/engine/checkpoint.h"
#include "tome/engine/config.h"

namespace tome::testing {

// The "tiny" preset, optionally changed by `edit`, written with random fp32 weights to `dir`.
engine::ModelConfig TinyConfig();
void WriteModel(const engine::ModelConfig& config, const std::string& dir, uint64_t seed,
                engine::TensorDType dtype = engine::TensorDType::kF32, int shards = 1);

// `n` token ids drawn uniformly from [3, vocab) (no special tokens).
std::vector<int32_t> RandomTokens(int64_t n, int64_t vocab, uint64_t seed);

// Max |a - b| / max(max |b|, floor) over all elements.
double MaxRelativeError(const std::vector<float>& a, const std::vector<float>& b,
                        double floor = 1e-6);

}  // namespace tome::testing
