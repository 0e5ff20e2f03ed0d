#include "checkpoint/presets.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tome::tools {
namespace {

using engine::MixerType;

std::vector<MixerType> Mixers(const std::string& pattern) {
  std::vector<MixerType> out;
  for (char c : pattern) out.push_back(c == 'S' ? MixerType::kSparse : MixerType::kLightning);
  return out;
}

}  // namespace

std::vector<std::string> PresetNames() { return {"tiny", "small", "bench5m", "sala-9b"}; }

absl::StatusOr<engine::ModelConfig> PresetConfig(const std::string& name) {
  engine::ModelConfig c;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  if (name == "tiny") {
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.num_attention_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 16;
    c.lightning_heads = 4;
    c.lightning_head_dim = 16;
    c.vocab_size = 259;
    c.mixer_types = Mixers("SLLS");
    c.scale_emb = 12;
    c.scale_depth = 1.4;
    c.dim_model_base = 64;
    c.sparse = {32, 16, 1, 64, 64, 2, 8192};  // kernel, stride, init, block, window, topk, dense
  } else if (name == "small" || name == "bench5m") {
    c.hidden_size = 256;
    c.intermediate_size = name == "small" ? 768 : 512;
    c.num_attention_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 64;
    c.lightning_heads = 4;
    c.lightning_head_dim = 64;
    c.vocab_size = name == "small" ? 259 : 2048;
    c.mixer_types = Mixers("SLLSLLLS");
    c.scale_emb = 12;
    c.scale_depth = 1.4;
    c.dim_model_base = 256;
    c.sparse = {32, 16, 1, 64, 256, 16, 8192};
  } else if (name == "sala-9b") {
    c.hidden_size = 4096;
    c.intermediate_size = 16384;
    c.num_attention_heads = 32;
    c.num_kv_heads = 2;
    c.head_dim = 128;
    c.lightning_heads = 32;
    c.lightning_head_dim = 128;
    c.vocab_size = 73448;
    c.mixer_types = Mixers("SLLLLLLLLSLLLLLLSSLLLLSLLLLLLSSS");
    c.scale_emb = 12;
    c.scale_depth = 1.4;
    c.dim_model_base = 256;
    c.eos_token_ids = {2, 73440};
    c.sparse = {32, 16, 1, 64, 2048, 64, 8192};
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown preset '", name, "'; known: ",
                                                   absl::StrJoin(PresetNames(), ", ")));
  }
  c.num_layers = static_cast<int64_t>(c.mixer_types.size());
  if (auto status = c.Validate(); !status.ok()) return status;
  return c;
}

}  // namespace tome::tools
