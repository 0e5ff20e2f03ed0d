// The engine against the independent PyTorch reference (tools/reference), on random small
// configs chosen so that a few hundred tokens already leave many candidate blocks for top-k:
// per-layer hidden states, final Lightning states and all logits within 1e-3 relative
// (fp32), and the selected block sets exactly equal.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testutil/process.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_models.h"
#include "tome/engine/engine.h"

namespace tome::engine {
namespace {

using testing::MaxRelativeError;

constexpr double kTolerance = 1e-3;

std::vector<float> ReadF32(const std::string& path, size_t n) {
  std::vector<float> v(n);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * 4));
  EXPECT_TRUE(in.good()) << path;
  return v;
}

std::vector<int32_t> ReadI32(const std::string& path, size_t n) {
  std::vector<int32_t> v(n);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * 4));
  EXPECT_TRUE(in.good()) << path;
  return v;
}

struct Case {
  std::string name;
  ModelConfig config;
  int64_t tokens;
  DenseThresholdMode mode;
  uint64_t seed;
};

ModelConfig MakeConfig(int64_t hidden, int64_t heads, int64_t kv, int64_t head_dim,
                       int64_t lightning_heads, const std::string& mixers, int64_t window,
                       int64_t topk, bool tied) {
  ModelConfig c = testing::TinyConfig();
  c.hidden_size = hidden;
  c.intermediate_size = 2 * hidden;
  c.num_attention_heads = heads;
  c.num_kv_heads = kv;
  c.head_dim = head_dim;
  c.lightning_heads = lightning_heads;
  c.lightning_head_dim = head_dim;
  c.mixer_types.clear();
  for (char m : mixers) c.mixer_types.push_back(m == 'S' ? MixerType::kSparse : MixerType::kLightning);
  c.num_layers = static_cast<int64_t>(mixers.size());
  c.sparse.window_size = window;
  c.sparse.topk = topk;
  c.tie_word_embeddings = tied;
  c.dim_model_base = hidden / 4.0;  // logits divided by 4
  return c;
}

std::vector<Case> Cases() {
  return {
      {"tiny_sparse", testing::TinyConfig(), 900, DenseThresholdMode::kAlwaysSparse, 1},
      {"tiny_hf", testing::TinyConfig(), 700, DenseThresholdMode::kHf, 2},
      // 4 query heads per KV group, 2 local blocks, 3 dynamic.
      {"gqa4", MakeConfig(64, 8, 2, 8, 8, "SLS", 128, 3, false), 1200,
       DenseThresholdMode::kAlwaysSparse, 3},
      // 3 KV groups, 6 Lightning heads (non-power-of-two ALiBi slopes), tied embeddings.
      {"six_heads_tied", MakeConfig(48, 6, 3, 8, 6, "SLLLS", 64, 4, true), 1000,
       DenseThresholdMode::kAlwaysSparse, 4},
      // Multi-query attention (one KV head for all 4 query heads).
      {"mqa", MakeConfig(32, 4, 1, 8, 4, "LSL", 64, 2, false), 800,
       DenseThresholdMode::kAlwaysSparse, 5},
  };
}

class StateCollector : public StateSink {
 public:
  absl::Status Put(const StateRecordKey& key, absl::string_view bytes) override {
    if (key.kind == StateRecordKind::kLightningState) lightning[key.layer] = std::string(bytes);
    return absl::OkStatus();
  }
  std::map<int, std::string> lightning;
};

class ReferenceParityTest : public ::testing::TestWithParam<Case> {};

TEST_P(ReferenceParityTest, MatchesPyTorchReference) {
  const Case& c = GetParam();
  testing::TempDir dir;
  testing::WriteModel(c.config, dir.Sub("model"), c.seed);
  const auto tokens = testing::RandomTokens(c.tokens, c.config.vocab_size, c.seed + 100);
  {
    std::ofstream out(dir.Sub("tokens.bin"), std::ios::binary);
    out.write(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 4);
  }
  const std::string mode = c.mode == DenseThresholdMode::kHf ? "hf" : "always_sparse";
  std::string log;
  const int rc = testing::RunCommand(
      {"/usr/bin/python3", TOME_SOURCE_DIR "/tools/reference/run_reference.py", "--model",
       dir.Sub("model"), "--tokens", dir.Sub("tokens.bin"), "--out", dir.Sub("ref"), "--mode",
       mode},
      &log);
  ASSERT_EQ(rc, 0) << "the PyTorch reference failed (is python3-torch installed?):\n" << log;

  EngineOptions options;
  options.model_dir = dir.Sub("model");
  options.dense_mode = c.mode;
  options.max_chunk_tokens = 256;  // chunked prefill against the reference's one shot
  auto engine = Engine::Create(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto seq = (*engine)->NewSequence().value();
  std::vector<std::vector<float>> hidden;
  std::vector<std::vector<int32_t>> selection;
  PrefillOptions prefill;
  prefill.all_logits = true;
  prefill.capture_hidden = &hidden;
  prefill.capture_selection = &selection;
  auto logits = (*engine)->Prefill(*seq, tokens, prefill);
  ASSERT_TRUE(logits.ok()) << logits.status();

  const ModelConfig& cfg = c.config;
  const size_t T = tokens.size(), D = cfg.hidden_size;
  const std::string ref = dir.Sub("ref");
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const auto expected = ReadF32(absl::StrCat(ref, "/hidden_", l, ".f32"), T * D);
    const double err = MaxRelativeError(hidden[l], expected);
    EXPECT_LT(err, kTolerance) << c.name << " layer " << l << " hidden state";
    std::printf("[parity] %s layer %lld (%s): max relative error %.2e\n", c.name.c_str(),
                static_cast<long long>(l),
                cfg.mixer_types[l] == MixerType::kSparse ? "sparse" : "lightning", err);
  }
  const auto expected_logits = ReadF32(ref + "/logits.f32", T * cfg.vocab_size);
  const double logit_err = MaxRelativeError(*logits, expected_logits);
  EXPECT_LT(logit_err, kTolerance) << c.name << " logits";
  std::printf("[parity] %s logits: max relative error %.2e\n", c.name.c_str(), logit_err);

  // Final Lightning states, through the state-save path.
  StateCollector states;
  ASSERT_TRUE((*engine)->SaveState(*seq, 0, states).ok());
  const int64_t ld = cfg.lightning_head_dim;
  for (const auto& [layer, bytes] : states.lightning) {
    const size_t n = cfg.lightning_heads * ld * ld;
    std::vector<float> got(n);
    std::memcpy(got.data(), bytes.data(), n * 4);
    const auto expected = ReadF32(absl::StrCat(ref, "/lightning_state_", layer, ".f32"), n);
    EXPECT_LT(MaxRelativeError(got, expected), kTolerance) << c.name << " state " << layer;
  }

  // Selected blocks: the same sets, exactly, wherever the reference ran the sparse path.
  std::ifstream manifest_in(ref + "/manifest.json");
  const auto manifest = nlohmann::json::parse(manifest_in);
  const int64_t topk = cfg.sparse.topk_total(), G = cfg.num_kv_heads;
  int64_t compared = 0, with_choice = 0;
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    if (cfg.mixer_types[l] != MixerType::kSparse) continue;
    const bool ref_dense = manifest["dense"][std::to_string(l)].get<bool>();
    if (ref_dense) continue;
    const auto expected = ReadI32(absl::StrCat(ref, "/selected_", l, ".i32"), T * G * topk);
    ASSERT_EQ(selection[l].size(), expected.size());
    for (size_t i = 0; i < expected.size(); i += topk) {
      const std::vector<int32_t> want(expected.begin() + i, expected.begin() + i + topk);
      const std::vector<int32_t> got(selection[l].begin() + i, selection[l].begin() + i + topk);
      ASSERT_EQ(got, want) << c.name << " layer " << l << " position " << i / topk / G;
      ++compared;
      const int64_t position = static_cast<int64_t>(i / topk / G);
      with_choice += position / cfg.sparse.block_size + 1 > topk;
    }
  }
  if (c.mode == DenseThresholdMode::kAlwaysSparse) {
    EXPECT_GT(with_choice, compared / 2) << "most positions must have more blocks than slots";
  }
  std::printf("[parity] %s: %lld block sets equal (%lld with a real top-k choice)\n",
              c.name.c_str(), static_cast<long long>(compared), static_cast<long long>(with_choice));
}

INSTANTIATE_TEST_SUITE_P(Configs, ReferenceParityTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace tome::engine
