// The tensor layout of a MiniCPM-SALA checkpoint (SALA-MODEL.md §2), validation of a
// checkpoint against its config, and a writer of random checkpoints in exactly that format
// (tests, benchmarks and the demo use it while no trained model is at hand).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tome/engine/config.h"
#include "tome/engine/safetensors.h"

namespace tome::engine {

enum class TensorRole { kLinear, kNorm, kEmbedding };

struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
  TensorRole role;
};

// Every tensor the config implies, in checkpoint naming (395 for the released model).
std::vector<ExpectedTensor> ExpectedTensors(const ModelConfig& config);

// InvalidArgument naming the first missing, misshapen or unexpected tensor. Rotary tables
// (*.rotary_emb.*) are ignored.
absl::Status ValidateCheckpoint(const ModelConfig& config,
                                const SafetensorsCheckpoint& checkpoint);

struct RandomCheckpointOptions {
  uint64_t seed = 0;
  TensorDType dtype = TensorDType::kBF16;
  int num_shards = 1;
  float linear_std = 0.02f;  // projections and embeddings ~ N(0, std²)
};

// Writes config.json and the weights of `config` with random values into `dir`.
absl::Status WriteRandomCheckpoint(const ModelConfig& config, const std::string& dir,
                                   const RandomCheckpointOptions& options);

}  // namespace tome::engine
