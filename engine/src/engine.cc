#include "tome/engine/engine.h"

#include <algorithm>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "backend.h"
#ifdef TOME_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif
#include "model.h"
#include "parallel_model.h"
#include "tome/base/status_macros.h"
#include "tome/engine/safetensors.h"
#include "tome/kernels/cpu/blas_env.h"
#include "tome/kernels/cpu/sampling.h"

namespace tome::engine {

void PrepareCpuProcess(char** argv) { kernels::cpu::ReexecWithFasterBlasIfNeeded(argv); }

Sequence::Sequence(std::unique_ptr<SequenceState> state) : state_(std::move(state)) {}
Sequence::~Sequence() = default;

int64_t Sequence::num_tokens() const { return state_->num_tokens; }

bool Sequence::on_demand() const { return state_->stored != nullptr; }

int64_t Sequence::OwnedBytes() const {
  int64_t bytes = 0;
  auto add = [&](const SequenceState& state) {
    for (const LayerState& ls : state.layers) {
      bytes += ls.lightning.bytes();
      for (const auto* group :
           {&ls.sparse.keys, &ls.sparse.values, &ls.sparse.k1, &ls.sparse.k2}) {
        for (const PagedBuffer& b : *group) bytes += b.OwnedBytes();
      }
    }
  };
  add(*state_);
  for (const auto& rank : state_->other_ranks) add(*rank);  // tensor parallelism
  if (state_->pending != nullptr) {  // layers still being read count as they will be
    for (const PendingLoad::Layer& layer : state_->pending->layers()) {
      if (state_->unapplied[layer.layer]) bytes += layer.bytes;
    }
  }
  return bytes;
}

absl::Status Sequence::LoadStatus() const {
  return state_->pending != nullptr ? state_->pending->failure() : absl::OkStatus();
}

Engine::Engine(EngineOptions options, std::unique_ptr<Backend> backend,
               std::unique_ptr<Model> model, std::unique_ptr<ParallelModel> parallel,
               std::unique_ptr<Tokenizer> tokenizer)
    : options_(std::move(options)),
      config_(parallel ? parallel->config() : model->config()),
      backend_(std::move(backend)),
      model_(std::move(model)),
      parallel_(std::move(parallel)),
      tokenizer_(std::move(tokenizer)) {}

Engine::~Engine() {
  model_.reset();  // frees weights through the backend before the backend goes
  parallel_.reset();
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  namespace fs = std::filesystem;
  const bool random = options.random_weights_seed.has_value();
  const bool have_dir = !options.model_dir.empty() && fs::is_directory(options.model_dir);
  if (!have_dir && !(random && options.model_dir.empty() && options.config_override)) {
    return absl::NotFoundError(
        absl::StrCat("model directory '", options.model_dir, "' does not exist"));
  }
  ModelConfig config;
  if (options.config_override) {
    config = *options.config_override;
  } else {
    TOME_ASSIGN_OR_RETURN(
        config, ModelConfig::FromFile((fs::path(options.model_dir) / "config.json").string()));
  }
  std::unique_ptr<SafetensorsCheckpoint> checkpoint;
  if (!random) {
    TOME_ASSIGN_OR_RETURN(checkpoint, SafetensorsCheckpoint::Open(options.model_dir));
  }
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;
  std::unique_ptr<ParallelModel> parallel;
  if (options.tensor_parallel != 1) {
    TOME_ASSIGN_OR_RETURN(parallel, ParallelModel::Create(config, checkpoint.get(), options));
  } else switch (options.device) {
    case DeviceKind::kCpu:
      backend = NewCpuBackend(options.num_threads);
      break;
    case DeviceKind::kCuda:
#ifdef TOME_HAVE_CUDA
      TOME_ASSIGN_OR_RETURN(backend, NewCudaBackend(options.cuda_device));
      break;
#else
      return absl::UnimplementedError("this build has no CUDA backend");
#endif
  }
  if (parallel) {
    // every rank's model is loaded
  } else if (random) {
    TOME_ASSIGN_OR_RETURN(model, Model::CreateRandom(config, backend.get(), options,
                                                     *options.random_weights_seed));
  } else {
    TOME_ASSIGN_OR_RETURN(model, Model::Load(config, *checkpoint, backend.get(), options));
  }
  std::unique_ptr<Tokenizer> tokenizer;
  if (have_dir) {
    TOME_ASSIGN_OR_RETURN(tokenizer, LoadTokenizer(options.model_dir,
                                                   static_cast<int32_t>(config.vocab_size)));
  } else {
    if (config.vocab_size < 259) {
      return absl::InvalidArgumentError("random-weight models need vocab_size >= 259");
    }
    tokenizer = NewByteTokenizer(static_cast<int32_t>(config.vocab_size));
  }
  return std::unique_ptr<Engine>(new Engine(options, std::move(backend), std::move(model),
                                            std::move(parallel), std::move(tokenizer)));
}

const ModelConfig& Engine::config() const { return config_; }

StateSizes Engine::state_sizes() const {  // all ranks together
  const ModelConfig& c = config();
  const Backend& b = parallel_ ? *parallel_->backend(0) : *backend_;
  const int64_t elem = DTypeSize(b.activation_dtype());
  const int64_t kv_row = c.num_kv_heads * c.head_dim * elem;  // one token of one layer's K
  StateSizes sizes;
  sizes.lightning_bytes =
      c.num_lightning_layers() * c.lightning_heads * c.lightning_head_dim * c.lightning_head_dim * 4;
  sizes.kv_bytes_per_token = c.num_sparse_layers() * 2 * kv_row;
  // A level-1 summary per kernel_stride tokens and a level-2 one per 4 kernel_stride.
  sizes.summary_bytes_per_token =
      c.num_sparse_layers() * kv_row * 5 / (4 * c.sparse.kernel_stride);
  return sizes;
}

const Tokenizer& Engine::tokenizer() const { return *tokenizer_; }

absl::StatusOr<std::unique_ptr<Sequence>> Engine::NewSequence() const {
  std::lock_guard<std::mutex> lock(forward_mu_);
  TOME_ASSIGN_OR_RETURN(std::unique_ptr<SequenceState> state,
                        parallel_ ? parallel_->NewState() : model_->NewState());
  return std::unique_ptr<Sequence>(new Sequence(std::move(state)));
}

absl::StatusOr<std::unique_ptr<Sequence>> Engine::Fork(const Sequence& sequence) const {
  std::lock_guard<std::mutex> lock(forward_mu_);
  TOME_ASSIGN_OR_RETURN(std::unique_ptr<SequenceState> state,
                        parallel_ ? parallel_->ForkState(*sequence.state_)
                                  : model_->ForkState(*sequence.state_));
  return std::unique_ptr<Sequence>(new Sequence(std::move(state)));
}

absl::StatusOr<std::vector<float>> Engine::Prefill(Sequence& sequence,
                                                   absl::Span<const int32_t> tokens,
                                                   const PrefillOptions& options) const {
  std::vector<float> logits;
  if (parallel_) {
    TOME_RETURN_IF_ERROR(
        parallel_->Forward(*sequence.state_, tokens, options, &logits, &forward_mu_));
  } else {
    TOME_RETURN_IF_ERROR(
        model_->Forward(*sequence.state_, tokens, options, &logits, &forward_mu_));
  }
  return logits;
}

absl::StatusOr<std::vector<std::vector<float>>> Engine::DecodeBatch(
    absl::Span<Sequence* const> sequences, absl::Span<const int32_t> tokens,
    absl::Span<std::vector<double>* const> evidence) const {
  std::vector<SequenceState*> states;
  states.reserve(sequences.size());
  for (Sequence* s : sequences) states.push_back(s->state_.get());
  std::vector<std::vector<float>> logits;
  std::lock_guard<std::mutex> lock(forward_mu_);
  if (parallel_) {
    TOME_RETURN_IF_ERROR(parallel_->ForwardBatch(states, tokens, &logits, evidence));
  } else {
    TOME_RETURN_IF_ERROR(model_->ForwardBatch(states, tokens, &logits, evidence));
  }
  return logits;
}

absl::StatusOr<GenerateResult> Engine::Generate(Sequence& sequence, std::vector<float> logits,
                                                const GenerateOptions& options) const {
  const int64_t V = config().vocab_size;
  if (static_cast<int64_t>(logits.size()) != V) {
    return absl::InvalidArgumentError("Generate needs the logits of the last token");
  }
  std::vector<int32_t> stops = config().eos_token_ids;
  stops.insert(stops.end(), options.stop_tokens.begin(), options.stop_tokens.end());
  std::mt19937_64 rng(options.sampling.seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<float> scratch(2 * V);
  GenerateResult result;
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    const int32_t token =
        kernels::cpu::SampleToken(logits.data(), V, options.sampling.temperature,
                                  options.sampling.top_p, uniform(rng), scratch.data());
    if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
      result.stopped_by_eos = true;
      break;
    }
    result.tokens.push_back(token);
    if (options.on_token && !options.on_token(token)) {
      result.cancelled = true;
      break;
    }
    if (i + 1 == options.max_new_tokens) break;
    if (options.decode_step) {
      TOME_ASSIGN_OR_RETURN(logits, options.decode_step(token));
    } else {
      Sequence* seq = &sequence;
      std::vector<double>* evidence = options.block_evidence;
      TOME_ASSIGN_OR_RETURN(auto next,
                            DecodeBatch(absl::MakeConstSpan(&seq, 1), absl::MakeConstSpan(&token, 1),
                                        absl::MakeConstSpan(&evidence, 1)));
      logits = std::move(next[0]);
    }
  }
  return result;
}

absl::Status Engine::SaveState(const Sequence& sequence, int64_t saved_tokens,
                               StateSink& sink) const {
  std::lock_guard<std::mutex> lock(forward_mu_);
  if (parallel_) return parallel_->SaveState(*sequence.state_, saved_tokens, sink);
  TOME_RETURN_IF_ERROR(model_->FinishLoad(*sequence.state_));
  return model_->Save(*sequence.state_, saved_tokens, sink);
}

absl::StatusOr<std::unique_ptr<Sequence>> Engine::LoadState(int64_t num_tokens,
                                                            StateSource& source) const {
  std::lock_guard<std::mutex> lock(forward_mu_);
  TOME_ASSIGN_OR_RETURN(std::unique_ptr<SequenceState> state,
                        parallel_ ? parallel_->LoadState(num_tokens, source)
                                  : model_->Load(num_tokens, source));
  return std::unique_ptr<Sequence>(new Sequence(std::move(state)));
}

std::shared_ptr<BlockCache> Engine::NewBlockCache(int64_t device_budget_bytes,
                                                  int64_t host_budget_bytes,
                                                  int read_threads) const {
  std::vector<Backend*> backends;  // one per rank
  if (parallel_) {
    for (int r = 0; r < parallel_->world(); ++r) backends.push_back(parallel_->backend(r));
  } else {
    backends.push_back(backend_.get());
  }
  return std::make_shared<BlockCache>(std::move(backends), device_budget_bytes, host_budget_bytes,
                                      read_threads);
}

namespace {

// Where a storage-backed sequence fetches its blocks from; InvalidArgument naming `caller`
// without a source or a cache.
absl::StatusOr<std::shared_ptr<const StoredBlocks>> MakeStoredBlocks(
    const char* caller, std::shared_ptr<StateSource> source, std::shared_ptr<BlockCache> cache,
    std::string source_id) {
  if (source == nullptr || cache == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(caller, " needs a state source and a block cache"));
  }
  auto stored = std::make_shared<StoredBlocks>();
  stored->source = std::move(source);
  stored->cache = std::move(cache);
  stored->source_id = std::move(source_id);
  return stored;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Sequence>> Engine::LoadStateOnDemand(
    int64_t num_tokens, std::shared_ptr<StateSource> source, std::shared_ptr<BlockCache> cache,
    std::string source_id) const {
  TOME_ASSIGN_OR_RETURN(std::shared_ptr<const StoredBlocks> stored,
                        MakeStoredBlocks("LoadStateOnDemand", std::move(source), std::move(cache),
                                         std::move(source_id)));
  std::lock_guard<std::mutex> lock(forward_mu_);
  TOME_ASSIGN_OR_RETURN(std::unique_ptr<SequenceState> state,
                        parallel_ ? parallel_->LoadState(num_tokens, *stored->source, stored)
                                  : model_->Load(num_tokens, *stored->source, stored));
  return std::unique_ptr<Sequence>(new Sequence(std::move(state)));
}

absl::Status Engine::MoveBlocksToStorage(Sequence& sequence, std::shared_ptr<StateSource> source,
                                         std::shared_ptr<BlockCache> cache,
                                         std::string source_id) const {
  TOME_ASSIGN_OR_RETURN(std::shared_ptr<const StoredBlocks> stored,
                        MakeStoredBlocks("MoveBlocksToStorage", std::move(source),
                                         std::move(cache), std::move(source_id)));
  std::lock_guard<std::mutex> lock(forward_mu_);
  if (parallel_) return parallel_->MoveBlocksToStorage(*sequence.state_, std::move(stored));
  TOME_RETURN_IF_ERROR(model_->FinishLoad(*sequence.state_));
  model_->MoveBlocksToStorage(*sequence.state_, std::move(stored));
  return absl::OkStatus();
}

}  // namespace tome::engine
