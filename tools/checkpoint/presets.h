// Named model configurations for random checkpoints (tests, benchmarks, the demo model).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tome/engine/config.h"

namespace tome::tools {

// "tiny" (tests), "small" (~7M parameters, the layout of Tome's embedded model),
// "bench5m" (~5M, the CPU benchmark config), "sala-9b" (the released 9.48B shapes).
absl::StatusOr<engine::ModelConfig> PresetConfig(const std::string& name);
std::vector<std::string> PresetNames();

}  // namespace tome::tools
