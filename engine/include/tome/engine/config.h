// Model configuration: the HF-style config.json of a MiniCPM-SALA checkpoint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tome::engine {

enum class MixerType { kSparse, kLightning };  // "minicpm4", "lightning-attn"

// How sparse layers choose between dense and sparse attention (docs/MODEL-SEMANTICS.md).
enum class DenseThresholdMode {
  kAlwaysSparse,  // the official server's --dense-as-sparse; invariant to chunking
  kHf,            // dense when the sequence after the forward call is < dense_len
};

struct SparseConfig {
  int64_t kernel_size = 32;
  int64_t kernel_stride = 16;
  int64_t init_blocks = 1;
  int64_t block_size = 64;
  int64_t window_size = 2048;
  int64_t topk = 64;
  int64_t dense_len = 8192;

  int64_t local_blocks() const { return window_size / block_size; }
  int64_t topk_total() const { return topk + local_blocks(); }
};

struct ModelConfig {
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_attention_heads = 0;  // query heads of sparse layers
  int64_t num_kv_heads = 0;         // KV heads of sparse layers
  int64_t head_dim = 0;             // sparse layers
  int64_t lightning_heads = 0;
  int64_t lightning_head_dim = 0;
  int64_t vocab_size = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  double scale_emb = 1.0;
  double scale_depth = 1.0;
  double dim_model_base = 0;  // logits divide by hidden_size / dim_model_base
  bool tie_word_embeddings = false;
  int32_t bos_token_id = 1;
  std::vector<int32_t> eos_token_ids = {2};
  std::vector<MixerType> mixer_types;
  SparseConfig sparse;

  // µP residual multiplier: scale_depth / sqrt(num_layers).
  double residual_scale() const;
  // The final hidden state is divided by this before lm_head.
  double logit_divisor() const;
  int64_t num_sparse_layers() const;
  int64_t num_lightning_layers() const;
  int64_t group_size() const { return num_attention_heads / num_kv_heads; }
  // Total parameter count implied by the shapes.
  int64_t NumParameters() const;

  // Parses config.json text. Returns InvalidArgument naming the first bad or missing key, and
  // Unimplemented for architecture switches this engine does not support.
  static absl::StatusOr<ModelConfig> FromJson(absl::string_view json_text);
  static absl::StatusOr<ModelConfig> FromFile(const std::string& path);
  // Serialises back to config.json form (used by the random checkpoint writer).
  std::string ToJson() const;

  // Checks internal consistency (head counts, mixer list, sparse_config rules).
  absl::Status Validate() const;
};

}  // namespace tome::engine

namespace tome::engine {

// Per-head decay rates λ_h of Lightning layers: the ALiBi slope schedule for `num_heads`
// heads (λ_h = 2^(-(h+1)/4) for 32 heads). Computed in double, as the reference does.
std::vector<double> LightningSlopes(int64_t num_heads);

}  // namespace tome::engine
