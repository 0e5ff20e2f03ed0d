#include "tome/engine/config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tome/base/status_macros.h"

namespace tome::engine {
namespace {

using json = nlohmann::json;

absl::Status Bad(absl::string_view key, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: '", key, "' ", why));
}

template <typename T>
absl::Status ReadRequired(const json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Bad(key, "is missing");
  if constexpr (std::is_integral_v<T>) {
    if (!it->is_number_integer()) return Bad(key, "must be an integer");
  } else {
    if (!it->is_number()) return Bad(key, "must be a number");
  }
  *out = it->get<T>();
  return absl::OkStatus();
}

template <typename T>
absl::Status ReadOptional(const json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  return ReadRequired(j, key, out);
}

// The engine implements exactly SALA's architecture; a config asking for another variant is
// refused rather than silently computed wrong.
absl::Status RequireSwitch(const json& j, const char* key, bool expected) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return Bad(key, "must be true or false");
  if (it->get<bool>() != expected) {
    return absl::UnimplementedError(absl::StrCat("config.json: '", key, "' = ",
                                                 expected ? "false" : "true",
                                                 " is not supported; MiniCPM-SALA uses ",
                                                 expected ? "true" : "false"));
  }
  return absl::OkStatus();
}

}  // namespace

double ModelConfig::residual_scale() const {
  return scale_depth / std::sqrt(static_cast<double>(num_layers));
}

double ModelConfig::logit_divisor() const {
  return dim_model_base > 0 ? static_cast<double>(hidden_size) / dim_model_base : 1.0;
}

int64_t ModelConfig::num_sparse_layers() const {
  int64_t n = 0;
  for (MixerType t : mixer_types) n += t == MixerType::kSparse;
  return n;
}

int64_t ModelConfig::num_lightning_layers() const {
  return static_cast<int64_t>(mixer_types.size()) - num_sparse_layers();
}

int64_t ModelConfig::NumParameters() const {
  const int64_t D = hidden_size, F = intermediate_size;
  int64_t n = vocab_size * D * (tie_word_embeddings ? 1 : 2) + D;  // embeddings, lm_head, norm
  for (MixerType t : mixer_types) {
    n += 2 * D + 3 * D * F;  // two layer norms, MLP
    if (t == MixerType::kSparse) {
      const int64_t q = num_attention_heads * head_dim, kv = num_kv_heads * head_dim;
      n += D * q + 2 * D * kv + q * D + D * q;  // q, k, v, o, o_gate
    } else {
      const int64_t q = lightning_heads * lightning_head_dim;
      n += 4 * D * q + q * D + 2 * lightning_head_dim + q;  // q,k,v,z, o, q/k norm, o_norm
    }
  }
  return n;
}

absl::StatusOr<ModelConfig> ModelConfig::FromJson(absl::string_view json_text) {
  json j = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("config.json is not a valid JSON object");
  }
  ModelConfig c;
  TOME_RETURN_IF_ERROR(ReadRequired(j, "hidden_size", &c.hidden_size));
  TOME_RETURN_IF_ERROR(ReadRequired(j, "intermediate_size", &c.intermediate_size));
  TOME_RETURN_IF_ERROR(ReadRequired(j, "num_hidden_layers", &c.num_layers));
  TOME_RETURN_IF_ERROR(ReadRequired(j, "num_attention_heads", &c.num_attention_heads));
  TOME_RETURN_IF_ERROR(ReadRequired(j, "num_key_value_heads", &c.num_kv_heads));
  TOME_RETURN_IF_ERROR(ReadRequired(j, "vocab_size", &c.vocab_size));
  if (c.num_attention_heads <= 0) return Bad("num_attention_heads", "must be positive");
  c.head_dim = c.hidden_size / c.num_attention_heads;
  TOME_RETURN_IF_ERROR(ReadOptional(j, "head_dim", &c.head_dim));
  c.lightning_heads = c.num_attention_heads;
  TOME_RETURN_IF_ERROR(ReadOptional(j, "lightning_nh", &c.lightning_heads));
  c.lightning_head_dim = c.head_dim;
  TOME_RETURN_IF_ERROR(ReadOptional(j, "lightning_head_dim", &c.lightning_head_dim));
  int64_t lightning_nkv = c.lightning_heads;
  TOME_RETURN_IF_ERROR(ReadOptional(j, "lightning_nkv", &lightning_nkv));
  if (lightning_nkv != c.lightning_heads) {
    return absl::UnimplementedError("config.json: lightning_nkv must equal lightning_nh "
                                    "(Lightning layers are multi-head, no GQA)");
  }
  TOME_RETURN_IF_ERROR(ReadOptional(j, "rms_norm_eps", &c.rms_norm_eps));
  TOME_RETURN_IF_ERROR(ReadOptional(j, "rope_theta", &c.rope_theta));
  TOME_RETURN_IF_ERROR(ReadOptional(j, "scale_emb", &c.scale_emb));
  TOME_RETURN_IF_ERROR(ReadOptional(j, "scale_depth", &c.scale_depth));
  TOME_RETURN_IF_ERROR(ReadOptional(j, "dim_model_base", &c.dim_model_base));
  if (auto it = j.find("tie_word_embeddings"); it != j.end() && it->is_boolean()) {
    c.tie_word_embeddings = it->get<bool>();
  }
  TOME_RETURN_IF_ERROR(ReadOptional(j, "bos_token_id", &c.bos_token_id));
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    c.eos_token_ids.clear();
    if (it->is_number_integer()) {
      c.eos_token_ids.push_back(it->get<int32_t>());
    } else if (it->is_array()) {
      for (const auto& e : *it) {
        if (!e.is_number_integer()) return Bad("eos_token_id", "must hold integers");
        c.eos_token_ids.push_back(e.get<int32_t>());
      }
    } else {
      return Bad("eos_token_id", "must be an integer or a list of integers");
    }
  }

  TOME_RETURN_IF_ERROR(RequireSwitch(j, "lightning_use_rope", true));
  TOME_RETURN_IF_ERROR(RequireSwitch(j, "attn_use_rope", false));
  TOME_RETURN_IF_ERROR(RequireSwitch(j, "qk_norm", true));
  TOME_RETURN_IF_ERROR(RequireSwitch(j, "use_output_norm", true));
  TOME_RETURN_IF_ERROR(RequireSwitch(j, "use_output_gate", true));
  TOME_RETURN_IF_ERROR(RequireSwitch(j, "attn_use_output_gate", true));
  TOME_RETURN_IF_ERROR(RequireSwitch(j, "attention_bias", false));
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
    return absl::UnimplementedError("config.json: rope_scaling is not supported (SALA uses "
                                    "plain RoPE; expected null)");
  }
  if (auto it = j.find("hidden_act"); it != j.end() && it->is_string() &&
      it->get<std::string>() != "silu") {
    return absl::UnimplementedError("config.json: hidden_act must be \"silu\"");
  }
  if (auto it = j.find("lightning_scale"); it != j.end() && it->is_string() &&
      it->get<std::string>() != "1/sqrt(d)") {
    return absl::UnimplementedError("config.json: lightning_scale must be \"1/sqrt(d)\"");
  }

  auto mixers = j.find("mixer_types");
  if (mixers == j.end() || !mixers->is_array()) {
    return Bad("mixer_types", "must be a list with one entry per layer");
  }
  for (const auto& m : *mixers) {
    std::string name = m.is_string() ? m.get<std::string>() : "";
    if (name == "minicpm4") {
      c.mixer_types.push_back(MixerType::kSparse);
    } else if (name == "lightning-attn" || name == "lightning_attn" || name == "lightning") {
      c.mixer_types.push_back(MixerType::kLightning);
    } else {
      return Bad("mixer_types", absl::StrCat("has unknown entry '", m.dump(),
                                             "'; expected \"minicpm4\" or \"lightning-attn\""));
    }
  }

  auto sc = j.find("sparse_config");
  if (c.num_sparse_layers() > 0) {
    if (sc == j.end() || !sc->is_object()) {
      return Bad("sparse_config", "must be an object when mixer_types has minicpm4 layers");
    }
    SparseConfig& s = c.sparse;
    TOME_RETURN_IF_ERROR(ReadOptional(*sc, "kernel_size", &s.kernel_size));
    TOME_RETURN_IF_ERROR(ReadOptional(*sc, "kernel_stride", &s.kernel_stride));
    TOME_RETURN_IF_ERROR(ReadOptional(*sc, "init_blocks", &s.init_blocks));
    TOME_RETURN_IF_ERROR(ReadOptional(*sc, "block_size", &s.block_size));
    TOME_RETURN_IF_ERROR(ReadOptional(*sc, "window_size", &s.window_size));
    TOME_RETURN_IF_ERROR(ReadOptional(*sc, "topk", &s.topk));
    TOME_RETURN_IF_ERROR(ReadOptional(*sc, "dense_len", &s.dense_len));
    if (auto it = sc->find("use_nope"); it != sc->end() && it->is_boolean() && it->get<bool>()) {
      return absl::UnimplementedError("config.json: sparse_config.use_nope = true is not "
                                      "supported (SALA's keys carry no RoPE already)");
    }
  }
  TOME_RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::StatusOr<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  auto config = FromJson(ss.str());
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

absl::Status ModelConfig::Validate() const {
  auto positive = [](int64_t v, const char* key) -> absl::Status {
    return v > 0 ? absl::OkStatus() : Bad(key, "must be positive");
  };
  TOME_RETURN_IF_ERROR(positive(hidden_size, "hidden_size"));
  TOME_RETURN_IF_ERROR(positive(intermediate_size, "intermediate_size"));
  TOME_RETURN_IF_ERROR(positive(num_layers, "num_hidden_layers"));
  TOME_RETURN_IF_ERROR(positive(num_attention_heads, "num_attention_heads"));
  TOME_RETURN_IF_ERROR(positive(num_kv_heads, "num_key_value_heads"));
  TOME_RETURN_IF_ERROR(positive(head_dim, "head_dim"));
  TOME_RETURN_IF_ERROR(positive(lightning_heads, "lightning_nh"));
  TOME_RETURN_IF_ERROR(positive(lightning_head_dim, "lightning_head_dim"));
  TOME_RETURN_IF_ERROR(positive(vocab_size, "vocab_size"));
  // Upper bounds far above any real model (the released 9.48B has hidden_size 4096), so that
  // sizes derived from a config (parameter counts, state bytes, tensor shapes) fit in int64.
  auto at_most = [](int64_t v, int64_t max, const char* key) -> absl::Status {
    return v <= max ? absl::OkStatus() : Bad(key, absl::StrCat("must be at most ", max));
  };
  constexpr int64_t kMaxWidth = int64_t{1} << 20;
  TOME_RETURN_IF_ERROR(at_most(hidden_size, kMaxWidth, "hidden_size"));
  TOME_RETURN_IF_ERROR(at_most(intermediate_size, kMaxWidth, "intermediate_size"));
  TOME_RETURN_IF_ERROR(at_most(num_layers, 1024, "num_hidden_layers"));
  TOME_RETURN_IF_ERROR(at_most(num_attention_heads, 4096, "num_attention_heads"));
  TOME_RETURN_IF_ERROR(at_most(num_kv_heads, 4096, "num_key_value_heads"));
  TOME_RETURN_IF_ERROR(at_most(head_dim, 4096, "head_dim"));
  TOME_RETURN_IF_ERROR(at_most(lightning_heads, 4096, "lightning_nh"));
  TOME_RETURN_IF_ERROR(at_most(vocab_size, int64_t{1} << 24, "vocab_size"));
  if (num_attention_heads % num_kv_heads != 0) {
    return Bad("num_key_value_heads", "must divide num_attention_heads");
  }
  if (head_dim % 2 != 0 || lightning_head_dim % 2 != 0 || lightning_head_dim > 1024) {
    return Bad("lightning_head_dim", "must be even and at most 1024");
  }
  if (static_cast<int64_t>(mixer_types.size()) != num_layers) {
    return Bad("mixer_types", absl::StrCat("has ", mixer_types.size(),
                                           " entries but num_hidden_layers is ", num_layers));
  }
  if (!(rms_norm_eps > 0)) return Bad("rms_norm_eps", "must be positive");
  for (int32_t id : eos_token_ids) {
    if (id < 0 || id >= vocab_size) return Bad("eos_token_id", "is outside the vocabulary");
  }
  if (num_sparse_layers() == 0) return absl::OkStatus();
  const SparseConfig& s = sparse;
  TOME_RETURN_IF_ERROR(positive(s.block_size, "sparse_config.block_size"));
  TOME_RETURN_IF_ERROR(positive(s.kernel_size, "sparse_config.kernel_size"));
  TOME_RETURN_IF_ERROR(positive(s.kernel_stride, "sparse_config.kernel_stride"));
  TOME_RETURN_IF_ERROR(positive(s.topk, "sparse_config.topk"));
  for (const auto& [value, key] : {std::pair{s.block_size, "sparse_config.block_size"},
                                   {s.kernel_size, "sparse_config.kernel_size"},
                                   {s.topk, "sparse_config.topk"},
                                   {s.init_blocks, "sparse_config.init_blocks"},
                                   {s.window_size, "sparse_config.window_size"}}) {
    TOME_RETURN_IF_ERROR(at_most(value, kMaxWidth, key));
  }
  if (s.init_blocks < 0) return Bad("sparse_config.init_blocks", "must be >= 0");
  if (s.kernel_size % s.kernel_stride != 0 || s.block_size % s.kernel_stride != 0) {
    return Bad("sparse_config", "needs kernel_size and block_size divisible by kernel_stride");
  }
  if (s.window_size < 0 || s.window_size % s.block_size != 0) {
    return Bad("sparse_config.window_size", "must be a non-negative multiple of block_size");
  }
  // Every block must be forced while no level-2 summary is visible (MODEL-SEMANTICS.md).
  if ((4 * s.kernel_size - 2) / s.block_size - s.local_blocks() > s.init_blocks) {
    return Bad("sparse_config", "leaves blocks unforced before the first level-2 summary "
                                "exists; raise window_size or init_blocks");
  }
  if (s.init_blocks + s.local_blocks() + 1 > s.topk_total()) {
    return Bad("sparse_config.topk", "must exceed init_blocks (forced blocks must fit)");
  }
  return absl::OkStatus();
}

std::string ModelConfig::ToJson() const {
  json j;
  j["architectures"] = {"MiniCPMSALAForCausalLM"};
  j["model_type"] = "minicpm_sala";
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_kv_heads;
  j["head_dim"] = head_dim;
  j["lightning_nh"] = lightning_heads;
  j["lightning_nkv"] = lightning_heads;
  j["lightning_head_dim"] = lightning_head_dim;
  j["lightning_scale"] = "1/sqrt(d)";
  j["lightning_use_rope"] = true;
  j["attn_use_rope"] = false;
  j["qk_norm"] = true;
  j["use_output_norm"] = true;
  j["use_output_gate"] = true;
  j["attn_use_output_gate"] = true;
  j["attention_bias"] = false;
  j["hidden_act"] = "silu";
  j["vocab_size"] = vocab_size;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["rope_scaling"] = nullptr;
  j["scale_emb"] = scale_emb;
  j["scale_depth"] = scale_depth;
  j["dim_model_base"] = dim_model_base;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = bos_token_id;
  j["eos_token_id"] = eos_token_ids;
  j["torch_dtype"] = "bfloat16";
  json mixers = json::array();
  for (MixerType t : mixer_types) {
    mixers.push_back(t == MixerType::kSparse ? "minicpm4" : "lightning-attn");
  }
  j["mixer_types"] = mixers;
  j["sparse_config"] = {{"kernel_size", sparse.kernel_size},
                        {"kernel_stride", sparse.kernel_stride},
                        {"init_blocks", sparse.init_blocks},
                        {"block_size", sparse.block_size},
                        {"window_size", sparse.window_size},
                        {"topk", sparse.topk},
                        {"use_nope", false},
                        {"dense_len", sparse.dense_len}};
  return j.dump(2);
}

}  // namespace tome::engine

namespace tome::engine {
namespace {

std::vector<double> PowerOfTwoSlopes(int64_t n) {
  const double start = std::pow(2.0, -std::pow(2.0, -(std::log2(static_cast<double>(n)) - 3)));
  std::vector<double> slopes(n);
  for (int64_t i = 0; i < n; ++i) slopes[i] = std::pow(start, static_cast<double>(i + 1));
  return slopes;
}

}  // namespace

std::vector<double> LightningSlopes(int64_t num_heads) {
  const double log2n = std::log2(static_cast<double>(num_heads));
  if (log2n == std::floor(log2n)) return PowerOfTwoSlopes(num_heads);
  const int64_t closest = int64_t{1} << static_cast<int64_t>(std::floor(log2n));
  std::vector<double> slopes = PowerOfTwoSlopes(closest);
  const std::vector<double> extra = LightningSlopes(2 * closest);
  for (int64_t i = 0; static_cast<int64_t>(slopes.size()) < num_heads; i += 2) {
    slopes.push_back(extra[i]);
  }
  return slopes;
}

}  // namespace tome::engine
