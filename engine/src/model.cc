#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "fetch_timer.h"
#include "tome/base/status_macros.h"
#include "tome/engine/checkpoint.h"
#include "tome/kernels/random.h"

namespace tome::engine {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

absl::Status MissingRecord(const StateRecordKey& key, absl::string_view what) {
  return absl::DataLossError(absl::StrCat("stored state: ", what, " (layer ", key.layer,
                                          ", head ", key.head, ", index ", key.index, ")"));
}

}  // namespace

Model::Model(const ModelConfig& config, Backend* backend, const EngineOptions& options,
             ShardSpec shard, ShardDims dims)
    : config_(config),
      backend_(backend),
      options_(options),
      shard_(shard),
      dims_(dims),
      read_pool_(std::make_unique<WorkPool>(std::max(0, options.state_read_threads))),
      staging_pool_(std::make_unique<StagingPool>(
          [backend](int64_t bytes) { return backend->AllocateHost(bytes); })) {
  const SparseConfig& s = config.sparse;
  sparse_params_ = kernels::SparseParams{s.block_size, s.kernel_size, s.kernel_stride,
                                         s.init_blocks, s.local_blocks(), s.topk_total()};
  max_chunk_ = std::max<int64_t>(1, options.max_chunk_tokens);
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const ModelConfig& config,
                                                   const SafetensorsCheckpoint& checkpoint,
                                                   Backend* backend,
                                                   const EngineOptions& options,
                                                   ShardSpec shard) {
  TOME_RETURN_IF_ERROR(ValidateCheckpoint(config, checkpoint));
  TOME_ASSIGN_OR_RETURN(const ShardDims dims, ComputeShardDims(config, shard));
  std::unique_ptr<Model> model(new Model(config, backend, options, shard, dims));
  TOME_RETURN_IF_ERROR(model->LoadWeights(&checkpoint, 0));
  TOME_RETURN_IF_ERROR(model->AllocateWorkspace());
  return model;
}

absl::StatusOr<std::unique_ptr<Model>> Model::CreateRandom(const ModelConfig& config,
                                                           Backend* backend,
                                                           const EngineOptions& options,
                                                           uint64_t seed, ShardSpec shard) {
  TOME_RETURN_IF_ERROR(config.Validate());
  TOME_ASSIGN_OR_RETURN(const ShardDims dims, ComputeShardDims(config, shard));
  std::unique_ptr<Model> model(new Model(config, backend, options, shard, dims));
  TOME_RETURN_IF_ERROR(model->LoadWeights(nullptr, seed));
  TOME_RETURN_IF_ERROR(model->AllocateWorkspace());
  return model;
}

absl::Status Model::LoadWeights(const SafetensorsCheckpoint* ckpt, uint64_t seed) {
  const ModelConfig& c = config_;
  const DType wt = backend_->weight_dtype();
  auto alloc = [&](int64_t rows, int64_t cols, DType dtype) -> absl::StatusOr<Tensor> {
    TOME_ASSIGN_OR_RETURN(Buffer buffer, backend_->Allocate(rows * cols * DTypeSize(dtype)));
    Tensor t = buffer.View(dtype, rows, cols);
    weight_buffers_.push_back(std::move(buffer));
    return t;
  };
  // Converts one checkpoint tensor into `dst` and drops its mapped pages; without a
  // checkpoint, fills `dst` with random values (norm weights around 1).
  auto fill = [&](const std::string& name, const Tensor& dst, bool norm) -> absl::Status {
    if (ckpt == nullptr) {
      const uint64_t s = kernels::NameSeed(seed, name.c_str());
      backend_->FillRandom(dst, s, norm ? 1.0f : 0.0f, norm ? 0.1f : 0.02f);
      return absl::OkStatus();
    }
    TOME_ASSIGN_OR_RETURN(const TensorInfo* info, ckpt->Find(name));
    backend_->UploadTensor(*info, dst);
    ckpt->Release(*info);
    return absl::OkStatus();
  };
  auto upload = [&](const std::string& name, const Tensor& dst) { return fill(name, dst, false); };
  auto upload_norm = [&](const std::string& name, const Tensor& dst) {
    return fill(name, dst, true);
  };
  // This rank's part of the [rows, cols] tensor `name`: rows [row0, row0 + dst.rows),
  // columns [col0, col0 + dst.cols). Random weights are generated whole (a temporary) so
  // that the part holds the unsharded model's values; a checkpoint's part is read alone.
  std::vector<uint8_t> slice_storage;
  auto upload_part = [&](const std::string& name, const Tensor& dst, int64_t rows, int64_t cols,
                         int64_t row0, int64_t col0) -> absl::Status {
    if (dst.rows == rows && dst.cols == cols) return upload(name, dst);
    if (ckpt == nullptr) {
      TOME_ASSIGN_OR_RETURN(Buffer tmp, backend_->Allocate(rows * cols * DTypeSize(dst.dtype)));
      const Tensor whole = tmp.View(dst.dtype, rows, cols);
      backend_->FillRandom(whole, kernels::NameSeed(seed, name.c_str()), 0.0f, 0.02f);
      backend_->Copy(dst, whole.Rows(row0, dst.rows).Cols(col0, dst.cols));
      return absl::OkStatus();  // the backend frees `tmp` after the copy (stream order)
    }
    TOME_ASSIGN_OR_RETURN(const TensorInfo* info, ckpt->Find(name));
    TensorInfo part = SliceRows(*info, row0, dst.rows);
    if (dst.cols != cols) part = SliceCols(part, col0, dst.cols, &slice_storage);
    backend_->UploadTensor(part, dst);
    ckpt->Release(*info);
    return absl::OkStatus();
  };
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  const ShardDims& sd = dims_;
  const int64_t Fl = sd.intermediate, f0 = sd.intermediate0;

  TOME_ASSIGN_OR_RETURN(embed_, alloc(c.vocab_size, D, wt));  // replicated
  TOME_RETURN_IF_ERROR(upload("model.embed_tokens.weight", embed_));
  if (c.tie_word_embeddings && !sharded()) {
    lm_head_ = embed_;
  } else {
    // This rank's vocabulary rows; rows past the vocabulary (the last rank's padding) are 0.
    TOME_ASSIGN_OR_RETURN(lm_head_, alloc(sd.vocab_rows, D, wt));
    const Tensor valid = lm_head_.Rows(0, sd.vocab_valid);
    if (c.tie_word_embeddings) {
      backend_->Copy(valid, embed_.Rows(sd.vocab0, sd.vocab_valid));
    } else {
      TOME_RETURN_IF_ERROR(upload_part("lm_head.weight", valid, c.vocab_size, D, sd.vocab0, 0));
    }
    if (sd.vocab_valid < sd.vocab_rows) {
      backend_->Fill(lm_head_.Rows(sd.vocab_valid, sd.vocab_rows - sd.vocab_valid), 0.0f);
    }
  }
  // The final norm weight absorbs the logit divisor (y / (D / dim_model_base)).
  {
    const float inv = static_cast<float>(1.0 / c.logit_divisor());
    TOME_ASSIGN_OR_RETURN(final_norm_, alloc(1, D, DType::kF32));
    if (ckpt == nullptr) {
      backend_->FillRandom(final_norm_, kernels::NameSeed(seed, "model.norm.weight"), inv,
                           0.1f * inv);
    } else {
      TOME_ASSIGN_OR_RETURN(const TensorInfo* info, ckpt->Find("model.norm.weight"));
      std::vector<float> w(D);
      SafetensorsCheckpoint::ToFloat32(*info, w.data());
      for (float& v : w) v *= inv;
      backend_->CopyFromHost(final_norm_, w.data());
    }
  }
  {
    const std::vector<double> slopes = LightningSlopes(c.lightning_heads);
    std::vector<float> f(slopes.begin() + sd.lightning_head0,
                         slopes.begin() + sd.lightning_head0 + sd.lightning_heads);
    TOME_ASSIGN_OR_RETURN(slopes_, alloc(1, sd.lightning_heads, DType::kF32));
    backend_->CopyFromHost(slopes_, f.data());
  }

  layers_.resize(c.num_layers);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LayerWeights& w = layers_[l];
    w.type = c.mixer_types[l];
    const std::string p = absl::StrCat("model.layers.", l, ".");
    const std::string a = p + "self_attn.";
    TOME_ASSIGN_OR_RETURN(w.input_norm, alloc(1, D, DType::kF32));
    TOME_RETURN_IF_ERROR(upload_norm(p + "input_layernorm.weight", w.input_norm));
    TOME_ASSIGN_OR_RETURN(w.post_norm, alloc(1, D, DType::kF32));
    TOME_RETURN_IF_ERROR(upload_norm(p + "post_attention_layernorm.weight", w.post_norm));
    TOME_ASSIGN_OR_RETURN(w.gate_up, alloc(2 * Fl, D, wt));
    TOME_RETURN_IF_ERROR(upload_part(p + "mlp.gate_proj.weight", w.gate_up.Rows(0, Fl), F, D, f0, 0));
    TOME_RETURN_IF_ERROR(upload_part(p + "mlp.up_proj.weight", w.gate_up.Rows(Fl, Fl), F, D, f0, 0));
    TOME_ASSIGN_OR_RETURN(w.down, alloc(D, Fl, wt));
    TOME_RETURN_IF_ERROR(upload_part(p + "mlp.down_proj.weight", w.down, D, F, 0, f0));
    if (w.type == MixerType::kLightning) {
      const int64_t ld = c.lightning_head_dim, q = c.lightning_heads * ld;
      const int64_t ql = sd.lightning_heads * ld, q0 = sd.lightning_head0 * ld;
      TOME_ASSIGN_OR_RETURN(w.in_proj, alloc(4 * ql, D, wt));
      TOME_RETURN_IF_ERROR(upload_part(a + "q_proj.weight", w.in_proj.Rows(0, ql), q, D, q0, 0));
      TOME_RETURN_IF_ERROR(upload_part(a + "k_proj.weight", w.in_proj.Rows(ql, ql), q, D, q0, 0));
      TOME_RETURN_IF_ERROR(
          upload_part(a + "v_proj.weight", w.in_proj.Rows(2 * ql, ql), q, D, q0, 0));
      TOME_RETURN_IF_ERROR(
          upload_part(a + "z_proj.weight", w.in_proj.Rows(3 * ql, ql), q, D, q0, 0));
      TOME_ASSIGN_OR_RETURN(w.o_proj, alloc(D, ql, wt));
      TOME_RETURN_IF_ERROR(upload_part(a + "o_proj.weight", w.o_proj, D, q, 0, q0));
      TOME_ASSIGN_OR_RETURN(w.q_norm, alloc(1, ld, DType::kF32));
      TOME_RETURN_IF_ERROR(upload_norm(a + "q_norm.weight", w.q_norm));
      TOME_ASSIGN_OR_RETURN(w.k_norm, alloc(1, ld, DType::kF32));
      TOME_RETURN_IF_ERROR(upload_norm(a + "k_norm.weight", w.k_norm));
      TOME_ASSIGN_OR_RETURN(w.o_norm, alloc(1, q, DType::kF32));  // whole: spans all heads
      TOME_RETURN_IF_ERROR(upload_norm(a + "o_norm.weight", w.o_norm));
    } else {
      const int64_t d = c.head_dim;
      const int64_t q = c.num_attention_heads * d, kv = c.num_kv_heads * d;
      const int64_t ql = sd.q_heads * d, q0 = sd.q_head0 * d;
      const int64_t qs = sd.select_heads * d, qs0 = sd.select_head0 * d;
      const int64_t kvl = sd.kv_heads * d, kv0 = sd.kv_head0 * d;
      // [q of the selecting heads; k; v; o_gate of the attending heads] (shard.h)
      TOME_ASSIGN_OR_RETURN(w.in_proj, alloc(qs + 2 * kvl + ql, D, wt));
      TOME_RETURN_IF_ERROR(upload_part(a + "q_proj.weight", w.in_proj.Rows(0, qs), q, D, qs0, 0));
      TOME_RETURN_IF_ERROR(
          upload_part(a + "k_proj.weight", w.in_proj.Rows(qs, kvl), kv, D, kv0, 0));
      TOME_RETURN_IF_ERROR(
          upload_part(a + "v_proj.weight", w.in_proj.Rows(qs + kvl, kvl), kv, D, kv0, 0));
      TOME_RETURN_IF_ERROR(
          upload_part(a + "o_gate.weight", w.in_proj.Rows(qs + 2 * kvl, ql), q, D, q0, 0));
      TOME_ASSIGN_OR_RETURN(w.o_proj, alloc(D, ql, wt));
      TOME_RETURN_IF_ERROR(upload_part(a + "o_proj.weight", w.o_proj, D, q, 0, q0));
    }
  }
  return backend_->Synchronize();
}

absl::Status Model::AllocateWorkspace() {
  const ModelConfig& c = config_;
  const DType act = backend_->activation_dtype();
  // This rank's heads, groups and MLP columns (all of them unsharded).
  const int64_t T = max_chunk_, D = c.hidden_size, F = dims_.intermediate;
  const int64_t lq = dims_.lightning_heads * c.lightning_head_dim;
  const int64_t sq = dims_.q_heads * c.head_dim, skv = dims_.kv_heads * c.head_dim;
  const int64_t sel_q = dims_.select_heads * c.head_dim;
  const int64_t proj_cols = std::max({4 * lq, sel_q + 2 * skv + sq, 2 * F});
  const int64_t mix_cols = std::max({lq, sq, F});
  const int64_t sel_cols = dims_.kv_heads * sparse_params_.topk_total;
  auto alloc = [&](Buffer* b, int64_t rows, int64_t cols, DType dtype) -> absl::Status {
    TOME_ASSIGN_OR_RETURN(*b, backend_->Allocate(rows * cols * DTypeSize(dtype)));
    return absl::OkStatus();
  };
  TOME_RETURN_IF_ERROR(alloc(&ws_h_, T, D, act));
  TOME_RETURN_IF_ERROR(alloc(&ws_a_, T, D, act));
  TOME_RETURN_IF_ERROR(alloc(&ws_proj_, T, proj_cols, act));
  TOME_RETURN_IF_ERROR(alloc(&ws_mix_, T, mix_cols, act));
  TOME_RETURN_IF_ERROR(alloc(&ws_out_, T, D, act));
  TOME_RETURN_IF_ERROR(alloc(&ws_selected_, T, sel_cols, DType::kI32));
  TOME_RETURN_IF_ERROR(alloc(&ws_scores_, T, sel_cols, DType::kF32));
  TOME_RETURN_IF_ERROR(alloc(&ws_summary_, T / c.sparse.kernel_stride + 2, c.head_dim, act));
  TOME_RETURN_IF_ERROR(alloc(&ws_logit_in_, 1, D, act));
  TOME_RETURN_IF_ERROR(alloc(&ws_logits_, 1, shard_.world * dims_.vocab_rows, DType::kF32));
  if (sharded()) {
    TOME_RETURN_IF_ERROR(alloc(&ws_gather_, T, c.lightning_heads * c.lightning_head_dim, act));
    TOME_RETURN_IF_ERROR(alloc(&ws_logits_local_, 1, dims_.vocab_rows, DType::kF32));
    TOME_RETURN_IF_ERROR(alloc(&ws_flag_, 1, 1, DType::kF32));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SequenceState>> Model::NewState() {
  auto state = std::make_unique<SequenceState>();
  const DType act = backend_->activation_dtype();
  const int64_t d = config_.head_dim, G = dims_.kv_heads;  // this rank's groups and heads
  for (MixerType type : config_.mixer_types) {
    LayerState ls;
    ls.type = type;
    if (type == MixerType::kLightning) {
      const int64_t H = dims_.lightning_heads, ld = config_.lightning_head_dim;
      TOME_ASSIGN_OR_RETURN(ls.lightning, backend_->Allocate(H * ld * ld * 4));
      backend_->Fill(ls.lightning.View(DType::kF32, H * ld, ld), 0.0f);
    } else {
      for (int64_t g = 0; g < G; ++g) {
        ls.sparse.keys.emplace_back(backend_, act, config_.sparse.block_size, d);
        ls.sparse.values.emplace_back(backend_, act, config_.sparse.block_size, d);
        ls.sparse.k1.emplace_back(backend_, act, kSummaryPageRows, d);
        ls.sparse.k2.emplace_back(backend_, act, kSummaryPageRows, d);
      }
    }
    state->layers.push_back(std::move(ls));
  }
  return state;
}

absl::StatusOr<std::unique_ptr<SequenceState>> Model::ForkState(const SequenceState& src) {
  auto state = std::make_unique<SequenceState>();
  state->num_tokens = src.num_tokens;
  state->stored = src.stored;
  state->pending = src.pending;  // layers still being read: the fork takes them when it can
  state->unapplied = src.unapplied;
  for (const LayerState& from : src.layers) {
    LayerState ls;
    ls.type = from.type;
    if (from.type == MixerType::kLightning) {
      TOME_ASSIGN_OR_RETURN(ls.lightning, backend_->Allocate(from.lightning.bytes()));
      const int64_t ld = config_.lightning_head_dim;
      const int64_t rows = dims_.lightning_heads * ld;
      backend_->Copy(ls.lightning.View(DType::kF32, rows, ld),
                     from.lightning.View(DType::kF32, rows, ld));
    } else {
      ls.sparse = from.sparse;  // shares pages; appends copy a shared partial page first
    }
    state->layers.push_back(std::move(ls));
  }
  return state;
}

absl::Status Model::Forward(SequenceState& state, absl::Span<const int32_t> tokens,
                            const PrefillOptions& options, std::vector<float>* logits,
                            std::mutex* chunk_lock, int64_t call_end_hint) {
  const int64_t T = static_cast<int64_t>(tokens.size());
  if (T == 0) return absl::InvalidArgumentError("no tokens to process");
  for (int32_t id : tokens) {
    if (id < 0 || id >= config_.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", config_.vocab_size, ")"));
    }
  }
  if (options.capture_hidden) options.capture_hidden->assign(config_.num_layers, {});
  if (options.capture_selection) options.capture_selection->assign(config_.num_layers, {});
  const int64_t V = config_.vocab_size, D = config_.hidden_size;
  if (logits) logits->assign(options.all_logits ? T * V : V, 0.0f);
  const int64_t call_end = call_end_hint > 0 ? call_end_hint : state.num_tokens + T;
  for (int64_t c0 = 0; c0 < T; c0 += max_chunk_) {
    const int64_t n = std::min(max_chunk_, T - c0);
    std::unique_lock<std::mutex> lock;
    if (chunk_lock) lock = std::unique_lock<std::mutex>(*chunk_lock);
    std::vector<Segment> segment = {
        Segment{&state, tokens.subspan(c0, n), call_end, 0, state.num_tokens, nullptr}};
    TOME_RETURN_IF_ERROR(ForwardRows(segment, options, c0));
    const Tensor h = ws_h_.View(backend_->activation_dtype(), n, D);
    if (options.all_logits) {
      for (int64_t r = 0; r < n; ++r) {
        TOME_RETURN_IF_ERROR(ComputeLogits(h.Rows(r, 1), logits, (c0 + r) * V));
      }
    } else if (c0 + n == T) {
      TOME_RETURN_IF_ERROR(ComputeLogits(h.Rows(n - 1, 1), logits, 0));
    }
    if (lock.owns_lock()) lock.unlock();
    if (options.on_progress && !options.on_progress(c0 + n) && c0 + n < T) {
      return absl::CancelledError(
          absl::StrCat("prefill cancelled after ", c0 + n, " of ", T, " tokens"));
    }
  }
  return absl::OkStatus();
}

absl::Status Model::ForwardBatch(absl::Span<SequenceState* const> states,
                                 absl::Span<const int32_t> tokens,
                                 std::vector<std::vector<float>>* logits,
                                 absl::Span<std::vector<double>* const> evidence) {
  const int64_t n = static_cast<int64_t>(states.size());
  if (n == 0) return absl::OkStatus();
  if (static_cast<int64_t>(tokens.size()) != n || (!evidence.empty() && evidence.size() != states.size())) {
    return absl::InvalidArgumentError("ForwardBatch needs one token per sequence");
  }
  for (int32_t id : tokens) {
    if (id < 0 || id >= config_.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", config_.vocab_size, ")"));
    }
  }
  if (logits) logits->resize(n);
  const int64_t V = config_.vocab_size, D = config_.hidden_size;
  for (int64_t b0 = 0; b0 < n; b0 += max_chunk_) {
    const int64_t m = std::min(max_chunk_, n - b0);
    std::vector<Segment> segments;
    for (int64_t i = 0; i < m; ++i) {
      SequenceState* state = states[b0 + i];
      segments.push_back(Segment{state, tokens.subspan(b0 + i, 1), state->num_tokens + 1, i,
                                 state->num_tokens,
                                 evidence.empty() ? nullptr : evidence[b0 + i]});
    }
    TOME_RETURN_IF_ERROR(ForwardRows(segments, PrefillOptions{}, 0));
    const Tensor h = ws_h_.View(backend_->activation_dtype(), m, D);
    for (int64_t i = 0; i < m; ++i) {
      std::vector<float>* out = logits ? &(*logits)[b0 + i] : nullptr;
      if (out) out->assign(V, 0.0f);
      TOME_RETURN_IF_ERROR(ComputeLogits(h.Rows(i, 1), out, 0));
    }
  }
  return absl::OkStatus();
}

absl::Status Model::ForwardRows(std::vector<Segment>& segments, const PrefillOptions& options,
                                int64_t chunk_offset) {
  const ModelConfig& c = config_;
  const DType act = backend_->activation_dtype();
  const int64_t D = c.hidden_size, F = dims_.intermediate;  // this rank's MLP columns
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float alpha = static_cast<float>(c.residual_scale());
  batch_tokens_.clear();
  for (const Segment& s : segments) {
    batch_tokens_.insert(batch_tokens_.end(), s.tokens.begin(), s.tokens.end());
  }
  const int64_t T = static_cast<int64_t>(batch_tokens_.size());
  const Tensor h = ws_h_.View(act, T, D), a = ws_a_.View(act, T, D), out = ws_out_.View(act, T, D);

  backend_->Embedding(embed_, batch_tokens_, static_cast<float>(c.scale_emb), h);
  // a = the next block's normalised input: each residual add is fused with the RMSNorm after it.
  backend_->ResidualRmsNorm(h, Tensor{}, 0.0f, layers_[0].input_norm, eps, a);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = layers_[l];
    if (w.type == MixerType::kLightning) {
      LightningMixer(l, segments, a, out);
    } else {
      for (const Segment& s : segments) TOME_RETURN_IF_ERROR(AwaitLayer(*s.state, l));
      TOME_RETURN_IF_ERROR(SparseMixer(l, segments, a, options, chunk_offset, out));
    }
    if (sharded()) backend_->AllReduceSum(out);  // the ranks' heads' o_proj parts
    backend_->ResidualRmsNorm(h, out, alpha, w.post_norm, eps, a);
    const Tensor gate_up = ws_proj_.View(act, T, 2 * F), mid = ws_mix_.View(act, T, F);
    backend_->MatMulSiluMul(a, w.gate_up, gate_up, mid);
    backend_->MatMul(mid, w.down, out);
    if (sharded()) backend_->AllReduceSum(out);  // the ranks' MLP columns' down_proj parts
    if (l + 1 < c.num_layers) {
      backend_->ResidualRmsNorm(h, out, alpha, layers_[l + 1].input_norm, eps, a);
    } else {
      backend_->AddScaled(h, out, alpha);
    }
    if (options.capture_hidden) {
      std::vector<float>& dst = (*options.capture_hidden)[l];
      dst.resize((chunk_offset + T) * D);
      ActivationsToHost(h, dst.data() + chunk_offset * D);
    }
  }
  for (Segment& s : segments) s.state->num_tokens += s.rows();
  absl::Status status = backend_->Synchronize();
  upload_pins_.clear();
  // A tensor-parallel rank whose ops failed (a kernel launch, a cuBLAS call) has still
  // issued every collective of the chunk; the ranks agree here on whether any failed, so
  // that all of them return the error together and none goes on alone into the next
  // collective (the logits' gather), where it would wait forever.
  if (sharded()) status = AgreeAcrossRanks(std::move(status));
  return status;
}

absl::Status Model::AgreeAcrossRanks(absl::Status status) {
  const Tensor flag = ws_flag_.View(DType::kF32, 1, 1);
  backend_->Fill(flag, status.ok() ? 0.0f : 1.0f);
  backend_->AllReduceSum(flag);
  float failed = 0;
  backend_->CopyToHost(flag, &failed);
  absl::Status sync = backend_->Synchronize();
  if (!status.ok()) return status;
  if (!sync.ok()) return sync;
  if (failed != 0) {
    return absl::AbortedError(absl::StrCat("tensor-parallel rank ", shard_.rank,
                                           ": another rank of the group failed this step"));
  }
  return absl::OkStatus();
}

void Model::LightningMixer(int64_t layer, const std::vector<Segment>& segments, const Tensor& a,
                           const Tensor& out) {
  const ModelConfig& c = config_;
  const LayerWeights& w = layers_[layer];
  const DType act = backend_->activation_dtype();
  const int64_t H = dims_.lightning_heads, d = c.lightning_head_dim, q = H * d, T = a.rows;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float theta = static_cast<float>(c.rope_theta);
  const Tensor proj = ws_proj_.View(act, T, 4 * q);
  backend_->MatMul(a, w.in_proj, proj);
  const Tensor Q = proj.Cols(0, q), K = proj.Cols(q, q), V = proj.Cols(2 * q, q);
  const Tensor Z = proj.Cols(3 * q, q);
  const Tensor mix = ws_mix_.View(act, T, q);
  for (const Segment& s : segments) {  // positions and states are the sequence's own
    const Tensor Qs = Q.Rows(s.row0, s.rows()), Ks = K.Rows(s.row0, s.rows());
    backend_->QkHeadRmsNormRope(Qs, Ks, w.q_norm, w.k_norm, H, d, eps, s.first_position, theta);
    backend_->Lightning(Qs, Ks, V.Rows(s.row0, s.rows()), H, d, slopes_,
                        static_cast<float>(1.0 / std::sqrt(double(d))),
                        s.state->layers[layer].lightning.View(DType::kF32, H * d, d),
                        mix.Rows(s.row0, s.rows()));
  }
  // o_norm spans all heads: a sharded rank gathers every rank's heads, normalises the whole
  // rows (as one rank would) and keeps its own columns.
  Tensor normed = mix;
  if (sharded()) {
    const Tensor all = ws_gather_.View(act, T, c.lightning_heads * d);
    backend_->AllGatherCols(mix, all);
    backend_->RmsNorm(all, w.o_norm, 1, eps);
    normed = all.Cols(dims_.lightning_head0 * d, q);
    backend_->SigmoidMul(normed, Z);
  } else {
    backend_->RmsNormSigmoidMul(mix, w.o_norm, eps, Z);
  }
  backend_->MatMul(normed, w.o_proj, out);
}

absl::Status Model::SparseMixer(int64_t layer, const std::vector<Segment>& segments,
                                const Tensor& a, const PrefillOptions& options,
                                int64_t chunk_offset, const Tensor& out) {
  const ModelConfig& c = config_;
  const LayerWeights& w = layers_[layer];
  const DType act = backend_->activation_dtype();
  // This rank's query heads and the KV groups they read (all of them unsharded).
  // Hs (selecting) = Hq (attending) unless more ranks than KV groups share a group (shard.h).
  const int64_t Hq = dims_.q_heads, Hs = dims_.select_heads, G = dims_.kv_heads;
  const int64_t d = c.head_dim, T = a.rows;
  const int64_t q = Hq * d, qs = Hs * d, kv = G * d, topk = sparse_params_.topk_total;
  const Tensor proj = ws_proj_.View(act, T, qs + 2 * kv + q);
  backend_->MatMul(a, w.in_proj, proj);
  const Tensor Qsel = proj.Cols(0, qs), K = proj.Cols(qs, kv), V = proj.Cols(qs + kv, kv);
  const Tensor Q = Qsel.Cols((dims_.q_head0 - dims_.select_head0) * d, q);
  const Tensor gate = proj.Cols(qs + 2 * kv, q);
  const Tensor mix = ws_mix_.View(act, T, q);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  const bool capture = options.capture_selection != nullptr;
  // First every segment's appends and block selection, then (storage-backed segments) one
  // copy of all their selections to the host: a batched decode step of several on-demand
  // sessions stops once per layer, not once per session.
  struct Plan {
    bool dense = false, select = false, evidence = false;
  };
  auto plan_of = [&](const Segment& seg) {
    Plan plan;
    plan.dense =
        options_.dense_mode == DenseThresholdMode::kHf && seg.call_end < c.sparse.dense_len;
    plan.select = !plan.dense && !sparse_params_.SelectsAll(seg.first_position + seg.rows() - 1);
    plan.evidence = !plan.dense && seg.evidence != nullptr && dims_.first_of_group;
    return plan;
  };
  const Tensor all_selected = ws_selected_.View(DType::kI32, T, G * topk);
  int64_t stored_rows = 0;  // rows of the segments whose selection the host needs
  for (const Segment& seg : segments) {
    SparseLayerState& s = seg.state->layers[layer].sparse;
    const int64_t n = seg.rows(), p0 = seg.first_position;
    for (int64_t g = 0; g < G; ++g) {
      TOME_RETURN_IF_ERROR(s.keys[g].Append(K.Rows(seg.row0, n).Cols(g * d, d)));
      TOME_RETURN_IF_ERROR(s.values[g].Append(V.Rows(seg.row0, n).Cols(g * d, d)));
    }
    TOME_RETURN_IF_ERROR(UpdateSummaries(s, p0, p0 + n));
    const Plan plan = plan_of(seg);
    const Tensor scores = ws_scores_.View(DType::kF32, T, G * topk).Rows(seg.row0, n);
    if (!plan.dense && (plan.select || capture || plan.evidence)) {
      backend_->SelectBlocks(Qsel.Rows(seg.row0, n), Hs, d, p0, s.k1, s.k2, sparse_params_, scale,
                             all_selected.Rows(seg.row0, n), plan.evidence ? scores : Tensor{});
    }
    if (seg.state->stored && plan.select) stored_rows = seg.row0 + n;
  }
  if (stored_rows > 0) {
    host_fetch_selection_.resize(stored_rows * G * topk);
    const bool decode = std::all_of(segments.begin(), segments.end(),
                                    [](const Segment& seg) { return seg.rows() == 1; });
    const ScopedFetchCall call(decode);
    ScopedFetchTime timed(FetchPhase::kSelectionToHost);
    backend_->CopyToHost(all_selected.Rows(0, stored_rows), host_fetch_selection_.data());
    upload_pins_.clear();  // the queue has passed every earlier upload
  }
  for (const Segment& seg : segments) {
    const Plan plan = plan_of(seg);
    const bool dense = plan.dense, select = plan.select, evidence = plan.evidence;
    SparseLayerState& s = seg.state->layers[layer].sparse;
    const int64_t n = seg.rows(), p0 = seg.first_position;
    const Tensor Qs = Q.Rows(seg.row0, n);
    const Tensor selected = all_selected.Rows(seg.row0, n);
    const Tensor scores = ws_scores_.View(DType::kF32, T, G * topk).Rows(seg.row0, n);
    absl::Span<const PagedBuffer> keys = s.keys, values = s.values;
    if (seg.state->stored) {  // storage-backed: bring in the blocks these queries read
      TOME_RETURN_IF_ERROR(FetchStoredBlocks(
          *seg.state, layer, select ? host_fetch_selection_.data() + seg.row0 * G * topk : nullptr,
          n, p0 + n - 1));
      keys = overlay_keys_[layer];
      values = overlay_values_[layer];
    }
    {
      std::optional<ScopedFetchCall> call;
      std::optional<ScopedFetchTime> timed;
      if (seg.state->stored) {
        call.emplace(/*decode=*/n == 1);
        timed.emplace(FetchPhase::kAttention);
      }
      backend_->BlockSparseAttention(Qs, Hq, d, p0, keys, values, c.sparse.block_size,
                                     select ? selected : Tensor{}, topk, scale,
                                     mix.Rows(seg.row0, n));
    }
    fetched_.clear();  // enqueued: a slot given back is reused only by a later upload
    if (capture) {
      std::vector<int32_t>& dst = (*options.capture_selection)[layer];
      dst.resize((chunk_offset + n) * G * topk, -1);
      if (!dense) backend_->CopyToHost(selected, dst.data() + chunk_offset * G * topk);
    }
    if (evidence) AddEvidence(selected, scores, n, seg.evidence);
  }
  backend_->SigmoidMul(mix, gate);
  backend_->MatMul(mix, w.o_proj, out);
  return absl::OkStatus();
}

absl::Status Model::FetchStoredBlocks(const SequenceState& state, int64_t layer,
                                      const int32_t* selected, int64_t rows,
                                      int64_t last_position) {
  const SparseLayerState& s = state.layers[layer].sparse;
  const StoredBlocks& stored = *state.stored;
  const int64_t G = static_cast<int64_t>(s.keys.size()), topk = sparse_params_.topk_total;
  const int64_t B = config_.sparse.block_size, d = config_.head_dim;
  const int64_t causal = std::min(last_position / B + 1, s.keys[0].num_pages());
  const ScopedFetchCall call(/*decode=*/rows == 1);
  std::optional<ScopedFetchTime> plan(std::in_place, FetchPhase::kPlan);
  if (static_cast<int64_t>(overlay_keys_.size()) <= layer) {
    overlay_keys_.resize(layer + 1);
    overlay_values_.resize(layer + 1);
  }
  std::vector<PagedBuffer>& keys = overlay_keys_[layer];
  std::vector<PagedBuffer>& values = overlay_values_[layer];
  keys.resize(G);
  values.resize(G);
  for (int64_t g = 0; g < G; ++g) {  // last call's fetched pages put back (usually)
    keys[g].ResetView(s.keys[g]);
    values[g].ResetView(s.values[g]);
  }
  const int64_t elem = DTypeSize(backend_->activation_dtype());
  // Every block some query reads that is not resident, fetched in one call (the cache reads
  // its misses from the store in batches), in (group, block) order. From the selection's
  // entries rather than a pass over every causal block: a decode step at 1M tokens selects
  // a few hundred of 16K.
  // Blocks are stored under their global group index (this rank's groups start at kv_head0).
  std::vector<BlockCache::BlockId> fetch;
  if (selected == nullptr) {  // every causal block
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t b = 0; b < causal; ++b) {
        if (!keys[g].page_resident(b)) fetch.push_back({int32_t(dims_.kv_head0 + g), b});
      }
    }
  } else {
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t j = 0; j < topk; ++j) {
          const int32_t b = selected[(i * G + g) * topk + j];
          if (b >= 0 && b < causal && !keys[g].page_resident(b)) {
            fetch.push_back({int32_t(dims_.kv_head0 + g), b});
          }
        }
      }
    }
    std::sort(fetch.begin(), fetch.end(), [](const auto& x, const auto& y) {
      return std::tie(x.head, x.index) < std::tie(y.head, y.index);
    });
    fetch.erase(std::unique(fetch.begin(), fetch.end(),
                            [](const auto& x, const auto& y) {
                              return x.head == y.head && x.index == y.index;
                            }),
                fetch.end());
  }
  plan->items = static_cast<int64_t>(fetch.size());
  plan.reset();
  if (fetch.empty()) return absl::OkStatus();
  TOME_ASSIGN_OR_RETURN(
      fetched_, stored.cache->GetMany(shard_.rank, stored.source_id, *stored.source, int32_t(layer),
                                      fetch, B, d, elem, &upload_pins_));
  ScopedFetchTime views(FetchPhase::kViews);
  views.items = static_cast<int64_t>(fetch.size());
  for (size_t i = 0; i < fetch.size(); ++i) {
    const int64_t g = fetch[i].head - dims_.kv_head0;
    keys[g].SetViewPage(fetch[i].index, fetched_[i].keys.get());
    values[g].SetViewPage(fetch[i].index, fetched_[i].values.get());
  }
  return absl::OkStatus();
}

void Model::AddEvidence(const Tensor& selected, const Tensor& scores, int64_t rows,
                        std::vector<double>* evidence) {
  const int64_t width = selected.cols;
  host_selected_.resize(rows * width);
  host_scores_.resize(rows * width);
  backend_->CopyToHost(selected, host_selected_.data());
  backend_->CopyToHost(scores, host_scores_.data());
  for (int64_t i = 0; i < rows * width; ++i) {
    const int32_t b = host_selected_[i];
    const float score = host_scores_[i];
    // Forced blocks (the start and the local window) score +inf: they are no evidence.
    if (b < 0 || !std::isfinite(score)) continue;
    if (static_cast<int64_t>(evidence->size()) <= b) evidence->resize(b + 1, 0.0);
    (*evidence)[b] += score;
  }
}

absl::Status Model::UpdateSummaries(SparseLayerState& s, int64_t old_tokens,
                                    int64_t new_tokens) {
  const DType act = backend_->activation_dtype();
  for (int level = 1; level <= 2; ++level) {
    const int64_t window = level == 1 ? sparse_params_.kernel_size : sparse_params_.kernel_size2();
    const int64_t stride =
        level == 1 ? sparse_params_.kernel_stride : sparse_params_.kernel_stride2();
    const int64_t first = kernels::SparseParams::NumWindows(old_tokens, window, stride);
    const int64_t end = kernels::SparseParams::NumWindows(new_tokens, window, stride);
    if (end == first) continue;
    std::vector<PagedBuffer>& summaries = level == 1 ? s.k1 : s.k2;
    const Tensor tmp = ws_summary_.View(act, end - first, config_.head_dim);
    for (size_t g = 0; g < s.keys.size(); ++g) {
      if (summaries[g].num_rows() != first) {
        return absl::InternalError("block summaries out of step with the key cache");
      }
      backend_->WindowMeans(s.keys[g], first, window, stride, tmp);
      TOME_RETURN_IF_ERROR(summaries[g].Append(tmp));
    }
  }
  return absl::OkStatus();
}

absl::Status Model::ComputeLogits(const Tensor& h_row, std::vector<float>* logits,
                                  int64_t offset) {
  const Tensor x = ws_logit_in_.View(backend_->activation_dtype(), 1, config_.hidden_size);
  backend_->ResidualRmsNorm(h_row, Tensor{}, 0.0f, final_norm_,
                            static_cast<float>(config_.rms_norm_eps), x);
  const Tensor out = ws_logits_.View(DType::kF32, 1, shard_.world * dims_.vocab_rows);
  if (sharded()) {  // this rank's vocabulary rows, then every rank's
    const Tensor local = ws_logits_local_.View(DType::kF32, 1, dims_.vocab_rows);
    backend_->MatMul(x, lm_head_, local);
    backend_->AllGatherCols(local, out);
  } else {
    backend_->MatMul(x, lm_head_, out);
  }
  if (logits) backend_->CopyToHost(out.Cols(0, config_.vocab_size), logits->data() + offset);
  return backend_->Synchronize();
}

void Model::ActivationsToHost(const Tensor& src, float* host) {
  if (src.dtype == DType::kF32) {
    backend_->CopyToHost(src, host);
    return;
  }
  host_bf16_.resize(src.num_elements());
  backend_->CopyToHost(src, host_bf16_.data());
  for (size_t i = 0; i < host_bf16_.size(); ++i) host[i] = BFloat16ToFloat(host_bf16_[i]);
}

absl::Status Model::Save(const SequenceState& state, int64_t saved_tokens, StateSink& sink) {
  // A rank writes records in the unsharded layout: its Lightning heads' rows (the caller
  // assembles a layer's record from every rank's rows, ParallelModel::SaveState) and its
  // KV groups under their global index; of ranks sharing a group only the first writes it.
  const ModelConfig& c = config_;
  const int64_t B = c.sparse.block_size, d = c.head_dim;
  const int64_t elem = DTypeSize(backend_->activation_dtype());
  if (state.pending != nullptr) {
    return absl::FailedPreconditionError("Save: the state is still being loaded (FinishLoad)");
  }
  std::string bytes;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerState& ls = state.layers[l];
    if (ls.type == MixerType::kLightning) {
      const int64_t ld = c.lightning_head_dim, rows = dims_.lightning_heads * ld;
      bytes.resize(rows * ld * 4);
      backend_->CopyToHost(ls.lightning.View(DType::kF32, rows, ld), bytes.data());
      TOME_RETURN_IF_ERROR(sink.Put(
          {StateRecordKind::kLightningState, int32_t(l), 0, state.num_tokens, 0}, bytes));
      continue;
    }
    if (!dims_.first_of_group) continue;  // shared group: its first rank writes it
    for (int64_t g = 0; g < dims_.kv_heads; ++g) {
      const int32_t global_g = static_cast<int32_t>(dims_.kv_head0 + g);
      const PagedBuffer& keys = ls.sparse.keys[g];
      const PagedBuffer& values = ls.sparse.values[g];
      for (int64_t b = saved_tokens / B; b < keys.num_pages(); ++b) {
        const int64_t rows = keys.rows_in_page(b);
        bytes.resize(2 * rows * d * elem);
        BlockCache::Block fetched;  // for a block still in storage (sequence loaded on demand)
        if (!keys.page_resident(b)) {
          TOME_ASSIGN_OR_RETURN(fetched, state.stored->cache->Get(
                                             shard_.rank, state.stored->source_id,
                                             *state.stored->source, int32_t(l), global_g, b,
                                             rows, d, elem));
        }
        const void* k = fetched.keys ? fetched.keys.get() : keys.page(b);
        const void* v = fetched.values ? fetched.values.get() : values.page(b);
        backend_->CopyToHost(Tensor{const_cast<void*>(k), backend_->activation_dtype(), rows, d, d},
                             bytes.data());
        backend_->CopyToHost(Tensor{const_cast<void*>(v), backend_->activation_dtype(), rows, d, d},
                             bytes.data() + rows * d * elem);
        TOME_RETURN_IF_ERROR(
            sink.Put({StateRecordKind::kKvBlock, int32_t(l), global_g, b, rows}, bytes));
      }
      for (int level = 1; level <= 2; ++level) {
        const PagedBuffer& sum = level == 1 ? ls.sparse.k1[g] : ls.sparse.k2[g];
        const int64_t first_new = level == 1 ? sparse_params_.NumK1(saved_tokens)
                                             : sparse_params_.NumK2(saved_tokens);
        for (int64_t page = first_new / kSummaryPageRows; page < sum.num_pages(); ++page) {
          const int64_t rows = sum.rows_in_page(page);
          bytes.resize(rows * d * elem);
          backend_->CopyToHost(Tensor{const_cast<void*>(sum.page(page)), backend_->activation_dtype(), rows, d, d},
                               bytes.data());
          const StateRecordKind kind =
              level == 1 ? StateRecordKind::kSummaryK1 : StateRecordKind::kSummaryK2;
          TOME_RETURN_IF_ERROR(sink.Put({kind, int32_t(l), global_g, page, rows}, bytes));
        }
      }
    }
  }
  return absl::OkStatus();
}

int64_t Model::FirstResidentBlock(int64_t num_tokens) const {
  const int64_t B = config_.sparse.block_size;
  return std::max<int64_t>(
      0, CeilDiv(num_tokens, B) - (CeilDiv(sparse_params_.kernel_size2(), B) + 1));
}

void Model::MoveBlocksToStorage(SequenceState& state, std::shared_ptr<const StoredBlocks> stored) {
  const int64_t first_resident = FirstResidentBlock(state.num_tokens);
  for (LayerState& ls : state.layers) {
    if (ls.type == MixerType::kLightning) continue;
    for (size_t g = 0; g < ls.sparse.keys.size(); ++g) {
      for (int64_t b = 0; b < first_resident; ++b) {
        ls.sparse.keys[g].DropPage(b);
        ls.sparse.values[g].DropPage(b);
      }
    }
  }
  state.stored = std::move(stored);
}

absl::Status Model::AppendStoredPage(SparseLayerState& s, int64_t g, const StateRecordKey& key,
                                     const char* bytes, int64_t size, bool device_readable,
                                     std::vector<HostPiece>& pending) {
  const int64_t B = config_.sparse.block_size, d = config_.head_dim;
  const int64_t row_bytes = d * DTypeSize(backend_->activation_dtype());
  const int64_t rows = key.rows;
  if (key.kind == StateRecordKind::kKvBlock) {
    // The store may return the block's record of a longer prefix: its first rows.
    const int64_t stored_rows = size / (2 * row_bytes);
    if (size != 2 * stored_rows * row_bytes || stored_rows < rows || stored_rows > B) {
      return MissingRecord(key, "KV block has the wrong size");
    }
    TOME_RETURN_IF_ERROR(s.keys[g].AppendPageFromHost(bytes, rows, &pending, device_readable));
    return s.values[g].AppendPageFromHost(bytes + stored_rows * row_bytes, rows, &pending,
                                          device_readable);
  }
  if (size % row_bytes != 0 || size < rows * row_bytes || size > kSummaryPageRows * row_bytes) {
    return MissingRecord(key, "summary page has the wrong size");
  }
  PagedBuffer& summary = key.kind == StateRecordKind::kSummaryK1 ? s.k1[g] : s.k2[g];
  return summary.AppendPageFromHost(bytes, rows, &pending, device_readable);
}

void Model::AppendAbsentPages(SparseLayerState& s, int64_t count) {
  for (size_t g = 0; g < s.keys.size(); ++g) {
    for (int64_t b = 0; b < count; ++b) {
      s.keys[g].AppendAbsentPage();
      s.values[g].AppendAbsentPage();
    }
  }
}

absl::Status Model::AppendStoredRecords(SparseLayerState& s, absl::Span<const StateRecordKey> keys,
                                        const ReadRecords& read) {
  std::vector<HostPiece> pending;
  for (size_t i = 0; i < keys.size(); ++i) {
    TOME_RETURN_IF_ERROR(AppendStoredPage(s, keys[i].head - dims_.kv_head0, keys[i], read.record(i),
                                          read.sizes[i], read.staged(i), pending));
  }
  backend_->CopyManyFromHost(pending);  // the records may go once it returns
  return absl::OkStatus();
}

std::vector<PendingLoad::Layer> Model::SparseLayerRecords(int64_t num_tokens,
                                                          bool on_demand) const {
  const int64_t B = config_.sparse.block_size, d = config_.head_dim;
  const int64_t elem = DTypeSize(backend_->activation_dtype());
  // On demand, only the last blocks are read (appends and summaries then never touch an
  // absent page).
  const int64_t num_blocks = CeilDiv(num_tokens, B);
  const int64_t first_resident = on_demand ? FirstResidentBlock(num_tokens) : 0;
  std::vector<PendingLoad::Layer> layers;
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    if (config_.mixer_types[l] == MixerType::kLightning) continue;
    PendingLoad::Layer& layer = layers.emplace_back();
    layer.layer = l;
    layer.absent_pages = first_resident;
    // Per group (by its global index): its resident blocks, then its summary pages.
    for (int64_t g = 0; g < dims_.kv_heads; ++g) {
      const int32_t global_g = static_cast<int32_t>(dims_.kv_head0 + g);
      for (int64_t b = first_resident; b < num_blocks; ++b) {
        layer.keys.push_back(
            {StateRecordKind::kKvBlock, int32_t(l), global_g, b, std::min(B, num_tokens - b * B)});
        layer.bytes += 2 * B * d * elem;
      }
      for (int level = 1; level <= 2; ++level) {
        const int64_t n =
            level == 1 ? sparse_params_.NumK1(num_tokens) : sparse_params_.NumK2(num_tokens);
        const StateRecordKind kind =
            level == 1 ? StateRecordKind::kSummaryK1 : StateRecordKind::kSummaryK2;
        for (int64_t page = 0; page < CeilDiv(n, kSummaryPageRows); ++page) {
          layer.keys.push_back({kind, int32_t(l), global_g, page,
                                std::min(kSummaryPageRows, n - page * kSummaryPageRows)});
          layer.bytes += kSummaryPageRows * d * elem;
        }
      }
    }
  }
  return layers;
}

absl::StatusOr<std::unique_ptr<SequenceState>> Model::Load(
    int64_t num_tokens, StateSource& source, std::shared_ptr<const StoredBlocks> stored) {
  // Records are in the unsharded layout (Save): a rank reads its Lightning heads' rows and
  // its KV groups by their global index.
  const ModelConfig& c = config_;
  const int64_t B = c.sparse.block_size, d = c.head_dim;
  const int64_t elem = DTypeSize(backend_->activation_dtype());
  TOME_ASSIGN_OR_RETURN(std::unique_ptr<SequenceState> state, NewState());
  // The Lightning states first, one read each on the pool (2 MiB apiece at 9B).
  std::vector<int64_t> lightning_layers;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    if (state->layers[l].type == MixerType::kLightning) lightning_layers.push_back(l);
  }
  std::vector<absl::StatusOr<std::string>> lightning(lightning_layers.size());
  read_pool_->Run(lightning_layers.size(), [&](size_t i) {
    lightning[i] = source.Get(
        {StateRecordKind::kLightningState, int32_t(lightning_layers[i]), 0, num_tokens, 0});
  });
  const int64_t ld = c.lightning_head_dim;
  for (size_t i = 0; i < lightning_layers.size(); ++i) {
    const int64_t l = lightning_layers[i];
    const StateRecordKey key{StateRecordKind::kLightningState, int32_t(l), 0, num_tokens, 0};
    TOME_RETURN_IF_ERROR(lightning[i].status());
    const std::string& bytes = *lightning[i];
    if (static_cast<int64_t>(bytes.size()) != c.lightning_heads * ld * ld * 4) {
      return MissingRecord(key, "Lightning state has the wrong size");
    }
    backend_->CopyFromHost(
        state->layers[l].lightning.View(DType::kF32, dims_.lightning_heads * ld, ld),
        bytes.data() + dims_.lightning_head0 * ld * ld * 4);
  }
  state->num_tokens = num_tokens;
  // Each record fits a slot of record_bytes (a KV block or a summary page).
  const int64_t record_bytes = std::max(2 * B, kSummaryPageRows) * d * elem;
  std::vector<PendingLoad::Layer> sparse = SparseLayerRecords(num_tokens, stored != nullptr);
  if (stored != nullptr && options_.overlap_state_loading && options_.state_read_threads > 0 &&
      !sharded() && !sparse.empty()) {
    // The sparse layers are read in the background; the forward pass takes each when it
    // reaches it (AwaitLayer). Two layers' staging: one being read while one is built.
    constexpr int kLayersAhead = 2;
    size_t most = 0;
    for (const PendingLoad::Layer& layer : sparse) most = std::max(most, layer.keys.size());
    std::vector<std::shared_ptr<void>> staging;
    for (int i = 0; i < kLayersAhead; ++i) {
      TOME_ASSIGN_OR_RETURN(std::shared_ptr<void> buffer,
                            staging_pool_->Take(static_cast<int64_t>(most) * record_bytes));
      if (buffer == nullptr) break;  // the backend reads no host memory in place
      staging.push_back(std::move(buffer));
    }
    state->unapplied.assign(c.num_layers, false);
    for (const PendingLoad::Layer& layer : sparse) state->unapplied[layer.layer] = true;
    state->pending = std::make_shared<PendingLoad>(stored->source, std::move(sparse), record_bytes,
                                                   options_.state_read_threads, kLayersAhead,
                                                   std::move(staging));
  } else {
    // Read here, a window of batches at a time: one batch per read thread and one for the
    // caller. The bytes live until the window's pages are uploaded.
    const size_t window =
        kStateReadBatch * static_cast<size_t>(std::max(1, options_.state_read_threads + 1));
    TOME_ASSIGN_OR_RETURN(std::shared_ptr<void> staging,
                          staging_pool_->Take(static_cast<int64_t>(window) * record_bytes));
    for (const PendingLoad::Layer& layer : sparse) {
      SparseLayerState& s = state->layers[layer.layer].sparse;
      AppendAbsentPages(s, layer.absent_pages);
      const absl::Span<const StateRecordKey> keys = layer.keys;
      for (size_t w0 = 0; w0 < keys.size(); w0 += window) {
        const absl::Span<const StateRecordKey> part = keys.subspan(w0, window);
        TOME_ASSIGN_OR_RETURN(ReadRecords read,
                              ReadStateRecords(source, part, *read_pool_,
                                               static_cast<char*>(staging.get()), record_bytes));
        TOME_RETURN_IF_ERROR(AppendStoredRecords(s, part, read));
      }
    }
  }
  state->stored = std::move(stored);
  TOME_RETURN_IF_ERROR(backend_->Synchronize());
  return state;
}

absl::Status Model::AwaitLayer(SequenceState& state, int64_t layer) {
  if (state.pending == nullptr || !state.unapplied[layer]) return absl::OkStatus();
  PendingLoad& load = *state.pending;
  // In layer order, so that the reader (a few layers ahead) is never waited for out of turn.
  for (size_t i = 0; i < load.layers().size() && load.layers()[i].layer <= layer; ++i) {
    const PendingLoad::Layer& pending = load.layers()[i];
    std::optional<SparseLayerState>& built = load.built(i);
    if (!built.has_value()) {
      TOME_ASSIGN_OR_RETURN(const ReadRecords* read, load.Wait(i));
      // This state's layer is still as NewState made it: the template of the pages.
      SparseLayerState s = state.layers[pending.layer].sparse;
      AppendAbsentPages(s, pending.absent_pages);
      const absl::Status appended = AppendStoredRecords(s, pending.keys, *read);
      load.Release(i, appended);
      TOME_RETURN_IF_ERROR(appended);
      built = std::move(s);
    }
    if (state.unapplied[pending.layer]) {
      state.layers[pending.layer].sparse = *built;  // shares the pages
      state.unapplied[pending.layer] = false;
    }
  }
  if (std::none_of(state.unapplied.begin(), state.unapplied.end(), [](bool u) { return u; })) {
    state.pending.reset();
    state.unapplied.clear();
  }
  return absl::OkStatus();
}

absl::Status Model::FinishLoad(SequenceState& state) {
  // The layers still to come are always the last ones (AwaitLayer takes them in order).
  if (state.pending == nullptr) return absl::OkStatus();
  return AwaitLayer(state, state.pending->layers().back().layer);
}

}  // namespace tome::engine
