// The engine's decoders of stored model state (Lightning states, KV blocks, summary pages:
// Engine::LoadState) on records of arbitrary content and size, as a store with a valid
// checksum but wrong contents would return them. The loaded state must then be usable.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/presets.h"  // tools/
#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/fuzz_util.h"
#include "tome/engine/checkpoint.h"
#include "tome/engine/engine.h"
#include "tome/engine/state_io.h"

namespace engine = tome::engine;

namespace {

engine::Engine* TinyEngine() {
  static engine::Engine* const instance = [] {
    const std::string dir =
        (std::filesystem::temp_directory_path() / ("tome_state_load_fuzz_" + std::to_string(getpid())))
            .string();
    engine::RandomCheckpointOptions options;
    options.seed = 1;
    options.dtype = engine::TensorDType::kF32;
    auto config = tome::tools::PresetConfig("tiny");
    FUZZ_CHECK(config.ok());
    FUZZ_CHECK(engine::WriteRandomCheckpoint(*config, dir, options).ok());
    engine::EngineOptions engine_options;
    engine_options.model_dir = dir;
    engine_options.num_threads = 1;
    engine_options.state_read_threads = 0;  // FuzzedSource reads the input in call order
    auto created = engine::Engine::Create(engine_options);
    FUZZ_CHECK(created.ok());
    std::filesystem::remove_all(dir);
    return created->release();
  }();
  return instance;
}

// Answers each Get with bytes from the input: sometimes the right size for the record (so
// loading goes deeper), sometimes any size, sometimes NotFound.
class FuzzedSource final : public engine::StateSource {
 public:
  FuzzedSource(tome::fuzz::FuzzInput* in, const engine::ModelConfig& config)
      : in_(in), config_(config) {}
  absl::StatusOr<std::string> Get(const engine::StateRecordKey& key) override {
    const int mode = in_->IntegralInRange(0, 7);
    if (mode == 0) return absl::NotFoundError("fuzzed: absent");
    size_t size = 0;
    const int64_t d = config_.head_dim;
    switch (key.kind) {
      case engine::StateRecordKind::kLightningState:
        size = config_.lightning_heads * config_.lightning_head_dim * config_.lightning_head_dim * 4;
        break;
      case engine::StateRecordKind::kKvBlock:
        size = 2 * key.rows * d * 4;
        break;
      default:
        size = key.rows * d * 4;
        break;
    }
    if (mode == 1) size = in_->IntegralInRange<size_t>(0, 2 * size + 16);
    std::string bytes = in_->Bytes(size);
    bytes.resize(size, '\0');
    // Keep values finite half the time, so the state stays usable for the probe below.
    if (mode >= 4) {
      for (size_t i = 3; i < bytes.size(); i += 4) bytes[i] &= 0x3f;
    }
    return bytes;
  }

 private:
  tome::fuzz::FuzzInput* in_;
  const engine::ModelConfig& config_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engine::Engine* e = TinyEngine();
  tome::fuzz::FuzzInput in(data, size);
  const int64_t num_tokens = in.IntegralInRange<int64_t>(1, 700);
  FuzzedSource source(&in, e->config());
  auto sequence = e->LoadState(num_tokens, source);
  if (!sequence.ok()) return 0;
  FUZZ_CHECK((*sequence)->num_tokens() == num_tokens);
  // The loaded state must carry on: one more token through every layer.
  auto logits = e->Prefill(**sequence, std::vector<int32_t>{5});
  FUZZ_CHECK(logits.ok());
  return 0;
}
