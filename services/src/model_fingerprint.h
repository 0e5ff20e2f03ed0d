#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace tome::services {

// A 32-hex-digit fingerprint of the model in `model_dir`: XXH3-128 over config.json, every
// safetensors file and index, and the tokenizer, in name order. Stored state is tagged with
// it, so a changed model never silently reuses stale state.
absl::StatusOr<std::string> ComputeModelFingerprint(const std::string& model_dir);

}  // namespace tome::services
