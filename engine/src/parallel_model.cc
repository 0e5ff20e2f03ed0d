#include "parallel_model.h"

#include <algorithm>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "local_collective.h"
#include "tome/base/status_macros.h"
#ifdef TOME_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace tome::engine {

ParallelModel::ParallelModel(const ModelConfig& config, const EngineOptions& options, int world)
    : config_(config), options_(options), pool_(world), backends_(world), models_(world) {}

ParallelModel::~ParallelModel() {
  // Each rank's memory and communicator go on its own thread (NCCL teardown is per rank).
  (void)pool_.Run([&](int r) {
    models_[r].reset();
    backends_[r].reset();
    return absl::OkStatus();
  });
}

absl::StatusOr<std::unique_ptr<ParallelModel>> ParallelModel::Create(
    const ModelConfig& config, const SafetensorsCheckpoint* checkpoint,
    const EngineOptions& options) {
  const int world = options.tensor_parallel;
  TOME_RETURN_IF_ERROR(ValidateShard(config, ShardSpec{0, world}));
  std::unique_ptr<ParallelModel> pm(new ParallelModel(config, options, world));
  if (options.device == DeviceKind::kCpu) {
    std::vector<std::unique_ptr<Backend>> cpus;
    const int threads = options.num_threads > 0 ? std::max(1, options.num_threads / world) : 0;
    for (int r = 0; r < world; ++r) cpus.push_back(NewCpuBackend(threads));
    pm->backends_ = NewLocalCollectiveGroup(std::move(cpus));
  } else {
#ifdef TOME_HAVE_CUDA
    TOME_ASSIGN_OR_RETURN(std::shared_ptr<NcclGroup> group,
                          NewNcclGroup(options.cuda_device, world));
    // Created on the rank's thread, which then stays on the rank's device.
    TOME_RETURN_IF_ERROR(pm->pool_.Run([&](int r) -> absl::Status {
      TOME_ASSIGN_OR_RETURN(pm->backends_[r],
                            NewCudaBackend(options.cuda_device + r, group, r));
      return absl::OkStatus();
    }));
#else
    return absl::UnimplementedError("this build has no CUDA backend");
#endif
  }
  // A rank that fails must not leave the others waiting forever in a collective it will not
  // join: after a grace period its thread aborts every rank's collectives (NCCL:
  // ncclCommAbort). The group is then unusable; its calls fail with Aborted.
  ParallelModel* raw = pm.get();
  pm->pool_.SetErrorHandler([raw](int) {
    for (const std::unique_ptr<Backend>& b : raw->backends_) {
      if (b) b->AbortCollectives();
    }
  });
  TOME_RETURN_IF_ERROR(pm->pool_.Run([&](int r) -> absl::Status {
    const ShardSpec shard{r, world};
    Backend* b = pm->backends_[r].get();
    if (checkpoint == nullptr) {
      TOME_ASSIGN_OR_RETURN(pm->models_[r], Model::CreateRandom(config, b, options,
                                                                *options.random_weights_seed,
                                                                shard));
    } else {
      TOME_ASSIGN_OR_RETURN(pm->models_[r], Model::Load(config, *checkpoint, b, options, shard));
    }
    return absl::OkStatus();
  }));
  return pm;
}

absl::StatusOr<std::unique_ptr<SequenceState>> ParallelModel::NewState() {
  std::vector<std::unique_ptr<SequenceState>> states(world());
  TOME_RETURN_IF_ERROR(pool_.Run([&](int r) -> absl::Status {
    TOME_ASSIGN_OR_RETURN(states[r], models_[r]->NewState());
    return absl::OkStatus();
  }));
  std::unique_ptr<SequenceState> top = std::move(states[0]);
  for (int r = 1; r < world(); ++r) top->other_ranks.push_back(std::move(states[r]));
  return top;
}

absl::StatusOr<std::unique_ptr<SequenceState>> ParallelModel::ForkState(
    const SequenceState& state) {
  std::vector<std::unique_ptr<SequenceState>> states(world());
  TOME_RETURN_IF_ERROR(pool_.Run([&](int r) -> absl::Status {
    const SequenceState& from = r == 0 ? state : *state.other_ranks[r - 1];
    TOME_ASSIGN_OR_RETURN(states[r], models_[r]->ForkState(from));
    return absl::OkStatus();
  }));
  std::unique_ptr<SequenceState> top = std::move(states[0]);
  for (int r = 1; r < world(); ++r) top->other_ranks.push_back(std::move(states[r]));
  return top;
}

namespace {

// One rank's view of the caller's sink: KV and summary records go through (serialised);
// Lightning rows are placed into the layer's whole record at the rank's first head.
class RankSink : public StateSink {
 public:
  RankSink(StateSink* sink, std::mutex* mu, std::map<int32_t, std::string>* lightning,
           int64_t row_offset_bytes, int64_t record_bytes)
      : sink_(sink), mu_(mu), lightning_(lightning), offset_(row_offset_bytes),
        record_bytes_(record_bytes) {}
  absl::Status Put(const StateRecordKey& key, absl::string_view bytes) override {
    std::lock_guard<std::mutex> lock(*mu_);
    if (key.kind != StateRecordKind::kLightningState) return sink_->Put(key, bytes);
    std::string& whole = (*lightning_)[key.layer];
    whole.resize(static_cast<size_t>(record_bytes_));
    if (offset_ + static_cast<int64_t>(bytes.size()) > record_bytes_) {
      return absl::InternalError("a rank's Lightning rows do not fit the layer's record");
    }
    std::copy(bytes.begin(), bytes.end(), whole.begin() + offset_);
    return absl::OkStatus();
  }

 private:
  StateSink* sink_;
  std::mutex* mu_;
  std::map<int32_t, std::string>* lightning_;
  const int64_t offset_, record_bytes_;
};

// The caller's source, one Get at a time (ranks read concurrently).
class LockedSource : public StateSource {
 public:
  LockedSource(StateSource* source, std::mutex* mu) : source_(source), mu_(mu) {}
  absl::StatusOr<std::string> Get(const StateRecordKey& key) override {
    std::lock_guard<std::mutex> lock(*mu_);
    return source_->Get(key);
  }
  std::vector<absl::StatusOr<std::string>> GetMany(
      absl::Span<const StateRecordKey> keys) override {
    std::lock_guard<std::mutex> lock(*mu_);
    return source_->GetMany(keys);
  }
  absl::Status ReadMany(absl::Span<const StateRecordKey> keys, RecordVisitor visit) override {
    std::lock_guard<std::mutex> lock(*mu_);
    return source_->ReadMany(keys, visit);
  }

 private:
  StateSource* source_;
  std::mutex* mu_;
};

}  // namespace

absl::Status ParallelModel::SaveState(const SequenceState& state, int64_t saved_tokens,
                                      StateSink& sink) {
  const int64_t ld = config_.lightning_head_dim;
  const int64_t record_bytes = config_.lightning_heads * ld * ld * 4;
  std::mutex mu;
  std::map<int32_t, std::string> lightning;  // layer -> whole record
  TOME_RETURN_IF_ERROR(pool_.Run([&](int r) -> absl::Status {
    RankSink rank_sink(&sink, &mu, &lightning, models_[r]->dims().lightning_head0 * ld * ld * 4,
                       record_bytes);
    const SequenceState& mine = r == 0 ? state : *state.other_ranks[r - 1];
    return models_[r]->Save(mine, saved_tokens, rank_sink);
  }));
  for (const auto& [layer, bytes] : lightning) {
    TOME_RETURN_IF_ERROR(
        sink.Put({StateRecordKind::kLightningState, layer, 0, state.num_tokens, 0}, bytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SequenceState>> ParallelModel::LoadState(
    int64_t num_tokens, StateSource& source, std::shared_ptr<const StoredBlocks> stored) {
  std::mutex mu;
  LockedSource locked(&source, &mu);
  std::vector<std::unique_ptr<SequenceState>> states(world());
  TOME_RETURN_IF_ERROR(pool_.Run([&](int r) -> absl::Status {
    TOME_ASSIGN_OR_RETURN(states[r], models_[r]->Load(num_tokens, locked, stored));
    return absl::OkStatus();
  }));
  std::unique_ptr<SequenceState> top = std::move(states[0]);
  for (int r = 1; r < world(); ++r) top->other_ranks.push_back(std::move(states[r]));
  return top;
}

absl::Status ParallelModel::MoveBlocksToStorage(SequenceState& state,
                                                std::shared_ptr<const StoredBlocks> stored) {
  return pool_.Run([&](int r) {  // on the rank's thread: pages free on its device
    models_[r]->MoveBlocksToStorage(*RankState(state, r), stored);
    return absl::OkStatus();
  });
}

absl::Status ParallelModel::Forward(SequenceState& state, absl::Span<const int32_t> tokens,
                                    const PrefillOptions& options, std::vector<float>* logits,
                                    std::mutex* chunk_lock) {
  if (options.capture_selection != nullptr) {
    return absl::UnimplementedError(
        "capture_selection is not supported with tensor_parallel > 1 (each rank selects for "
        "its own KV groups)");
  }
  const int64_t T = static_cast<int64_t>(tokens.size());
  if (T == 0) return absl::InvalidArgumentError("no tokens to process");
  for (int32_t id : tokens) {  // all of them first: no chunk runs with a bad id ahead
    if (id < 0 || id >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", id, " is outside the vocabulary [0, ", config_.vocab_size, ")"));
    }
  }
  const int64_t V = config_.vocab_size, chunk = std::max<int64_t>(1, options_.max_chunk_tokens);
  const int64_t call_end = state.num_tokens + T;
  logits->assign(options.all_logits ? T * V : V, 0.0f);
  if (options.capture_hidden) options.capture_hidden->assign(config_.num_layers, {});
  std::vector<float> chunk_logits;
  std::vector<std::vector<float>> chunk_hidden;
  for (int64_t c0 = 0; c0 < T; c0 += chunk) {
    const int64_t n = std::min(chunk, T - c0);
    std::unique_lock<std::mutex> lock;
    if (chunk_lock) lock = std::unique_lock<std::mutex>(*chunk_lock);
    TOME_RETURN_IF_ERROR(pool_.Run([&](int r) {
      PrefillOptions o;
      o.all_logits = options.all_logits;  // every rank joins the logits' gather
      if (r == 0 && options.capture_hidden) o.capture_hidden = &chunk_hidden;
      return models_[r]->Forward(*RankState(state, r), tokens.subspan(c0, n), o,
                                 r == 0 ? &chunk_logits : nullptr, nullptr, call_end);
    }));
    if (options.all_logits) {
      std::copy(chunk_logits.begin(), chunk_logits.end(), logits->begin() + c0 * V);
    } else if (c0 + n == T) {
      *logits = std::move(chunk_logits);
    }
    if (options.capture_hidden) {
      for (size_t l = 0; l < chunk_hidden.size(); ++l) {
        std::vector<float>& dst = (*options.capture_hidden)[l];
        dst.insert(dst.end(), chunk_hidden[l].begin(), chunk_hidden[l].end());
      }
    }
    if (lock.owns_lock()) lock.unlock();
    if (options.on_progress && !options.on_progress(c0 + n) && c0 + n < T) {
      return absl::CancelledError(
          absl::StrCat("prefill cancelled after ", c0 + n, " of ", T, " tokens"));
    }
  }
  return absl::OkStatus();
}

absl::Status ParallelModel::ForwardBatch(absl::Span<SequenceState* const> states,
                                         absl::Span<const int32_t> tokens,
                                         std::vector<std::vector<float>>* logits,
                                         absl::Span<std::vector<double>* const> evidence) {
  const size_t n = states.size();
  // Ranks > 0 gather the evidence of their own KV groups apart; it is added afterwards.
  std::vector<std::vector<std::vector<double>>> rank_evidence(world());
  std::vector<std::vector<std::vector<double>*>> rank_evidence_ptrs(world());
  for (int r = 1; r < world() && !evidence.empty(); ++r) {
    rank_evidence[r].resize(n);
    for (size_t i = 0; i < n; ++i) {
      rank_evidence_ptrs[r].push_back(evidence[i] ? &rank_evidence[r][i] : nullptr);
    }
  }
  TOME_RETURN_IF_ERROR(pool_.Run([&](int r) {
    std::vector<SequenceState*> mine(n);
    for (size_t i = 0; i < n; ++i) mine[i] = RankState(*states[i], r);
    return models_[r]->ForwardBatch(mine, tokens, r == 0 ? logits : nullptr,
                                    r == 0 ? evidence : absl::MakeConstSpan(rank_evidence_ptrs[r]));
  }));
  for (int r = 1; r < world() && !evidence.empty(); ++r) {
    for (size_t i = 0; i < n; ++i) {
      if (!evidence[i]) continue;
      const std::vector<double>& add = rank_evidence[r][i];
      if (evidence[i]->size() < add.size()) evidence[i]->resize(add.size(), 0.0);
      for (size_t b = 0; b < add.size(); ++b) (*evidence[i])[b] += add[b];
    }
  }
  return absl::OkStatus();
}

}  // namespace tome::engine
