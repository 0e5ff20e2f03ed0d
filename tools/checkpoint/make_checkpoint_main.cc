// tome-make-checkpoint: writes a random MiniCPM-SALA checkpoint in the released format
// (config.json + safetensors, optionally sharded with an index).
//
//   tome-make-checkpoint --preset=small --out=/tmp/model [--seed=1] [--dtype=bf16] [--shards=1]
//   tome-make-checkpoint --config=my_config.json --out=/tmp/model
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "checkpoint/presets.h"
#include "tome/engine/checkpoint.h"

ABSL_FLAG(std::string, preset, "small", "tiny | small | bench5m | sala-9b");
ABSL_FLAG(std::string, config, "", "config.json to use instead of a preset");
ABSL_FLAG(std::string, out, "", "output directory (required)");
ABSL_FLAG(uint64_t, seed, 1, "random seed");
ABSL_FLAG(std::string, dtype, "bf16", "bf16 | f16 | f32");
ABSL_FLAG(int, shards, 1, "number of safetensors shards (> 1 writes an index)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Writes a random MiniCPM-SALA checkpoint.");
  absl::ParseCommandLine(argc, argv);
  using namespace tome;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "error: --out is required\n");
    return 2;
  }
  absl::StatusOr<engine::ModelConfig> config =
      absl::GetFlag(FLAGS_config).empty()
          ? tools::PresetConfig(absl::GetFlag(FLAGS_preset))
          : engine::ModelConfig::FromFile(absl::GetFlag(FLAGS_config));
  if (!config.ok()) {
    std::fprintf(stderr, "error: %s\n", config.status().ToString().c_str());
    return 2;
  }
  engine::RandomCheckpointOptions options;
  options.seed = absl::GetFlag(FLAGS_seed);
  options.num_shards = absl::GetFlag(FLAGS_shards);
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  if (dtype == "bf16") {
    options.dtype = engine::TensorDType::kBF16;
  } else if (dtype == "f16") {
    options.dtype = engine::TensorDType::kF16;
  } else if (dtype == "f32") {
    options.dtype = engine::TensorDType::kF32;
  } else {
    std::fprintf(stderr, "error: --dtype must be bf16, f16 or f32\n");
    return 2;
  }
  if (auto status = engine::WriteRandomCheckpoint(*config, out, options); !status.ok()) {
    std::fprintf(stderr, "error: %s\n", status.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s: %lld parameters, %lld layers\n", out.c_str(),
              static_cast<long long>(config->NumParameters()),
              static_cast<long long>(config->num_layers));
  return 0;
}
