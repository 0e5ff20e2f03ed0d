// Options of the engine and of single requests.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "tome/engine/config.h"

namespace tome::engine {

enum class DeviceKind { kCpu, kCuda };

struct EngineOptions {
  // Directory holding config.json, the safetensors weights and the tokenizer.
  std::string model_dir;
  DeviceKind device = DeviceKind::kCpu;
  // CUDA device index (device == kCuda); with tensor_parallel = N, ranks use devices
  // cuda_device .. cuda_device + N - 1.
  int cuda_device = 0;
  // Tensor parallelism inside this engine: N ranks, each holding 1/N of the attention heads
  // (sparse layers: whole KV groups), of the MLP columns and of the vocabulary, joined by
  // all-reduces (NCCL on CUDA; an in-process all-reduce on the CPU, which runs the same
  // sharded forward pass for tests). The config's Lightning heads, KV heads and
  // intermediate size must divide by N (docs/CUDA.md, "Tensor parallelism").
  int tensor_parallel = 1;
  // CPU threads for kernels and BLAS; <= 0 uses every core.
  int num_threads = 0;
  // Helper threads reading a stored state's records in parallel (LoadState and
  // LoadStateOnDemand; the StateSource must then serve concurrent GetMany calls). 0 reads
  // on the caller alone.
  int state_read_threads = 3;
  // LoadStateOnDemand returns once the Lightning states are in; the sparse layers' records
  // (block summaries, last blocks) are read in the background and the next forward pass
  // takes each layer when it reaches it, so that a cold question's first layers and block
  // fetches run while later layers are read. Needs state_read_threads > 0 (a thread-safe
  // source) and one GPU (tensor-parallel ranks load in full).
  bool overlap_state_loading = true;
  // Prefill processes at most this many tokens per forward call (bounds activation memory).
  int64_t max_chunk_tokens = 512;
  // Dense/sparse choice of sparse layers (docs/MODEL-SEMANTICS.md).
  DenseThresholdMode dense_mode = DenseThresholdMode::kAlwaysSparse;
  // Benchmarks and tests: when set, no checkpoint is read. The weights are generated on the
  // backend from this seed (projections and embeddings ~ N(0, 0.02²), norm weights
  // ~ N(1, 0.1²); Backend::FillRandom), the config is `config_override` (else model_dir's
  // config.json) and the tokenizer is model_dir's, or the byte-level one without model_dir.
  std::optional<uint64_t> random_weights_seed = std::nullopt;
  // Used instead of model_dir/config.json when set.
  std::optional<ModelConfig> config_override = std::nullopt;
};

struct PrefillOptions {
  // Called after every chunk with the number of tokens of this call processed so far;
  // returning false cancels the prefill (the sequence keeps the chunks already done).
  std::function<bool(int64_t done)> on_progress;
  // Test hook: when set, receives the hidden state [T, hidden] after every layer (index 0 =
  // after layer 0) for the tokens of this call, as fp32.
  std::vector<std::vector<float>>* capture_hidden = nullptr;
  // Test hook: when set, receives the selected blocks [T, G, topk_total] of every sparse
  // layer (keyed by layer index; -1 padded; empty for queries that attended densely).
  std::vector<std::vector<int32_t>>* capture_selection = nullptr;
  // Whether to compute logits for every position ([T, vocab]) instead of the last only.
  bool all_logits = false;
};

struct SamplingOptions {
  // <= 0: greedy decoding.
  float temperature = 0.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
};

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplingOptions sampling;
  // Generation also stops at the model's EOS tokens.
  std::vector<int32_t> stop_tokens;
  // Called with each generated token; returning false stops generation.
  std::function<bool(int32_t token)> on_token;
  // When set, receives per block the summed pooled stage-1 score of every dynamic block
  // selection the sparse layers made while generating (the answer's evidence).
  std::vector<double>* block_evidence = nullptr;
  // When set, runs each decode step instead of a direct forward pass (a batching scheduler
  // does, to put the steps of many sequences into one pass); it must append `token` to the
  // sequence and return the next logits.
  std::function<absl::StatusOr<std::vector<float>>(int32_t token)> decode_step;
};

}  // namespace tome::engine
