#include "model_fingerprint.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace tome::services {

absl::StatusOr<std::string> ComputeModelFingerprint(const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(model_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name == "config.json" || name == "tokenizer.model" ||
        absl::EndsWith(name, ".safetensors") || name == "model.safetensors.index.json") {
      files.push_back(entry.path());
    }
  }
  if (ec) return absl::NotFoundError(absl::StrFormat("cannot list %s: %s", model_dir, ec.message()));
  std::sort(files.begin(), files.end());
  XXH3_state_t* state = XXH3_createState();
  XXH3_128bits_reset(state);
  std::vector<char> buffer(8 << 20);
  for (const fs::path& path : files) {
    const std::string name = path.filename().string();
    XXH3_128bits_update(state, name.data(), name.size() + 1);
    std::ifstream in(path, std::ios::binary);
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      XXH3_128bits_update(state, buffer.data(), static_cast<size_t>(in.gcount()));
    }
  }
  const XXH128_hash_t hash = XXH3_128bits_digest(state);
  XXH3_freeState(state);
  return absl::StrFormat("%016x%016x", hash.high64, hash.low64);
}

}  // namespace tome::services
