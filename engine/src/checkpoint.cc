#include "tome/engine/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tome/base/status_macros.h"

namespace tome::engine {

std::vector<ExpectedTensor> ExpectedTensors(const ModelConfig& c) {
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  std::vector<ExpectedTensor> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, D}, TensorRole::kEmbedding});
  out.push_back({"model.norm.weight", {D}, TensorRole::kNorm});
  if (!c.tie_word_embeddings) {
    out.push_back({"lm_head.weight", {c.vocab_size, D}, TensorRole::kLinear});
  }
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    out.push_back({p + "input_layernorm.weight", {D}, TensorRole::kNorm});
    out.push_back({p + "post_attention_layernorm.weight", {D}, TensorRole::kNorm});
    out.push_back({p + "mlp.gate_proj.weight", {F, D}, TensorRole::kLinear});
    out.push_back({p + "mlp.up_proj.weight", {F, D}, TensorRole::kLinear});
    out.push_back({p + "mlp.down_proj.weight", {D, F}, TensorRole::kLinear});
    const std::string a = p + "self_attn.";
    if (c.mixer_types[l] == MixerType::kSparse) {
      const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
      out.push_back({a + "q_proj.weight", {q, D}, TensorRole::kLinear});
      out.push_back({a + "k_proj.weight", {kv, D}, TensorRole::kLinear});
      out.push_back({a + "v_proj.weight", {kv, D}, TensorRole::kLinear});
      out.push_back({a + "o_proj.weight", {D, q}, TensorRole::kLinear});
      out.push_back({a + "o_gate.weight", {q, D}, TensorRole::kLinear});
    } else {
      const int64_t q = c.lightning_heads * c.lightning_head_dim;
      out.push_back({a + "q_proj.weight", {q, D}, TensorRole::kLinear});
      out.push_back({a + "k_proj.weight", {q, D}, TensorRole::kLinear});
      out.push_back({a + "v_proj.weight", {q, D}, TensorRole::kLinear});
      out.push_back({a + "o_proj.weight", {D, q}, TensorRole::kLinear});
      out.push_back({a + "z_proj.weight", {q, D}, TensorRole::kLinear});
      out.push_back({a + "q_norm.weight", {c.lightning_head_dim}, TensorRole::kNorm});
      out.push_back({a + "k_norm.weight", {c.lightning_head_dim}, TensorRole::kNorm});
      out.push_back({a + "o_norm.weight", {q}, TensorRole::kNorm});
    }
  }
  return out;
}

absl::Status ValidateCheckpoint(const ModelConfig& config,
                                const SafetensorsCheckpoint& checkpoint) {
  std::set<std::string> expected_names;
  for (const ExpectedTensor& e : ExpectedTensors(config)) {
    expected_names.insert(e.name);
    auto it = checkpoint.tensors().find(e.name);
    if (it == checkpoint.tensors().end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint lacks tensor ", e.name, " [", absl::StrJoin(e.shape, ", "),
                       "] that config.json implies"));
    }
    if (it->second.shape != e.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", e.name, " has shape [", absl::StrJoin(it->second.shape, ", "),
          "] but config.json implies [", absl::StrJoin(e.shape, ", "), "]"));
    }
  }
  for (const auto& [name, info] : checkpoint.tensors()) {
    if (expected_names.count(name) || absl::StrContains(name, "rotary_emb")) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint has tensor ", name, " that config.json does not explain (wrong "
        "mixer_types or tie_word_embeddings?)"));
  }
  return absl::OkStatus();
}

absl::Status WriteRandomCheckpoint(const ModelConfig& config, const std::string& dir,
                                   const RandomCheckpointOptions& options) {
  TOME_RETURN_IF_ERROR(config.Validate());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir));
  {
    std::ofstream out(std::filesystem::path(dir) / "config.json", std::ios::trunc);
    out << config.ToJson() << "\n";
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write config.json in ", dir));
  }
  std::mt19937_64 rng(options.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto expected = ExpectedTensors(config);
  std::vector<std::vector<float>> data(expected.size());
  std::vector<TensorToWrite> tensors;
  for (size_t i = 0; i < expected.size(); ++i) {
    int64_t n = 1;
    for (int64_t d : expected[i].shape) n *= d;
    data[i].resize(n);
    for (float& v : data[i]) {
      v = expected[i].role == TensorRole::kNorm ? 1.0f + 0.1f * normal(rng)
                                                : options.linear_std * normal(rng);
    }
    tensors.push_back({expected[i].name, expected[i].shape, data[i].data()});
  }
  return WriteSafetensorsCheckpoint(dir, tensors, options.dtype, options.num_shards);
}

}  // namespace tome::engine
