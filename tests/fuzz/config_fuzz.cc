// config.json parsing (ModelConfig::FromJson): any text gives an error or a config that
// validates and survives a round trip through ToJson.
#include <cstdint>
#include <string>

#include "tests/fuzz/fuzz_util.h"
#include "tome/engine/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = tome::engine::ModelConfig::FromJson(text);
  if (!config.ok()) return 0;
  FUZZ_CHECK(config->Validate().ok());
  // What the engine derives from a config must be computable without overflow.
  (void)config->NumParameters();
  (void)config->residual_scale();
  (void)config->logit_divisor();
  const std::string json = config->ToJson();
  auto again = tome::engine::ModelConfig::FromJson(json);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->ToJson() == json);
  return 0;
}
