#include "tome_core.h"

#include <glog/logging.h>

#include <condition_variable>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "model_fingerprint.h"
#include "state_adapter.h"
#include "tome/base/status_macros.h"

namespace tome::services {

using storage::DocumentId;
using storage::DocumentRecord;
using storage::DocumentStatus;
using storage::kDefaultTenant;

namespace {

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

}  // namespace

absl::StatusOr<std::unique_ptr<TomeCore>> TomeCore::Create(const CoreOptions& options) {
  std::unique_ptr<TomeCore> core(new TomeCore(options));
  engine::EngineOptions engine_options;
  engine_options.model_dir = options.model_dir;
  engine_options.num_threads = options.num_threads;
  engine_options.dense_mode = options.dense_mode;
  engine_options.max_chunk_tokens = options.max_chunk_tokens;
  TOME_ASSIGN_OR_RETURN(core->engine_, engine::Engine::Create(engine_options));
  TOME_ASSIGN_OR_RETURN(core->fingerprint_, ComputeModelFingerprint(options.model_dir));
  core->prompt_ = std::make_unique<engine::PromptFormat>(&core->engine_->tokenizer());
  storage::StoreOptions store_options;
  store_options.model_fingerprint = core->fingerprint_;
  store_options.sync_writes = options.sync_writes;
  TOME_ASSIGN_OR_RETURN(core->store_, storage::ContextStore::Open(options.data_dir, store_options));
  core->cache_ = std::make_unique<DocumentStateCache>(options.state_cache_bytes);
  IngestionOptions ingestion_options;
  ingestion_options.checkpoint_tokens = options.checkpoint_tokens;
  core->ingestion_ = std::make_unique<IngestionManager>(
      core->engine_.get(), core->store_.get(), core->cache_.get(), ingestion_options);
  TOME_RETURN_IF_ERROR(core->ingestion_->Start());
  LOG(INFO) << "model " << options.model_dir << " (" << core->engine_->config().NumParameters()
            << " parameters, fingerprint " << core->fingerprint_ << ", tokenizer "
            << core->engine_->tokenizer().name() << "), data in " << options.data_dir;
  return core;
}

TomeCore::~TomeCore() {
  if (ingestion_) ingestion_->Stop();
}

absl::StatusOr<DocumentRecord> TomeCore::CreateDocument(const std::string& name) {
  return store_->CreateDocument(kDefaultTenant, name);
}

absl::StatusOr<DocumentRecord> TomeCore::GetDocument(DocumentId id) {
  return store_->GetDocument(kDefaultTenant, id);
}

absl::StatusOr<std::vector<DocumentRecord>> TomeCore::ListDocuments(DocumentId after,
                                                                    int limit) {
  return store_->ListDocuments(kDefaultTenant, after, limit);
}

absl::StatusOr<int64_t> TomeCore::StoredBytes(DocumentId id) {
  return store_->DocumentBytes(kDefaultTenant, id);
}

absl::Status TomeCore::DeleteDocument(DocumentId id) {
  TOME_RETURN_IF_ERROR(store_->GetDocument(kDefaultTenant, id).status());
  ingestion_->Forget(id);
  cache_->Erase(id);
  return store_->DeleteDocument(kDefaultTenant, id);
}

absl::StatusOr<AppendResult> TomeCore::AppendText(DocumentId id, const std::string& text) {
  if (text.empty()) return absl::InvalidArgumentError("the text to append is empty");
  if (static_cast<int64_t>(text.size()) > options_.max_document_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the text is ", text.size(), " bytes; this server accepts at most ",
        options_.max_document_bytes, " bytes per AppendText call (split it into several calls)"));
  }
  if (!engine::IsValidUtf8(text)) {
    return absl::InvalidArgumentError("the text is not valid UTF-8");
  }
  TOME_ASSIGN_OR_RETURN(DocumentRecord before, store_->GetDocument(kDefaultTenant, id));
  if (before.status == DocumentStatus::kFailed) {
    return absl::FailedPreconditionError(absl::StrCat(
        "document ", id, " failed to ingest (", before.error, "); delete and re-create it"));
  }
  std::vector<int32_t> tokens;
  if (before.num_tokens == 0) tokens = prompt_->DocumentHeader();
  TOME_ASSIGN_OR_RETURN(std::vector<int32_t> text_tokens, prompt_->DocumentText(text));
  tokens.insert(tokens.end(), text_tokens.begin(), text_tokens.end());
  TOME_ASSIGN_OR_RETURN(DocumentRecord record,
                        store_->AppendText(kDefaultTenant, id, text, tokens));
  ingestion_->Enqueue(id);
  return AppendResult{record, static_cast<int64_t>(text.size()),
                      static_cast<int64_t>(tokens.size())};
}

absl::Status TomeCore::WatchIngestion(
    DocumentId id, const std::function<bool(const IngestionProgress&)>& listener,
    const std::function<bool()>& cancelled) {
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  auto finish_if_final = [&](const IngestionProgress& p) {
    const bool final = p.record.status == DocumentStatus::kReady ||
                       p.record.status == DocumentStatus::kFailed ||
                       p.record.status == DocumentStatus::kEmpty;
    return !listener(p) || final;
  };
  const uint64_t subscription = ingestion_->Subscribe(id, [&](const IngestionProgress& p) {
    std::lock_guard<std::mutex> lock(mu);
    if (!finished && finish_if_final(p)) finished = true;
    cv.notify_all();
  });
  absl::Status status = absl::OkStatus();
  {
    auto record = store_->GetDocument(kDefaultTenant, id);
    std::unique_lock<std::mutex> lock(mu);
    if (!record.ok()) {
      status = record.status();
    } else if (!finished && finish_if_final(IngestionProgress{*record, 0, 0})) {
      finished = true;
    }
    while (status.ok() && !finished) {
      if (cancelled()) break;
      cv.wait_for(lock, std::chrono::milliseconds(100));
      if (!finished && store_->GetDocument(kDefaultTenant, id).status().code() ==
                           absl::StatusCode::kNotFound) {
        status = absl::NotFoundError(absl::StrCat("document ", id, " was deleted"));
      }
    }
  }
  ingestion_->Unsubscribe(subscription);
  return status;
}

absl::StatusOr<AskResult> TomeCore::Ask(DocumentId id, const AskParams& params,
                                        const std::function<bool(const std::string&)>& on_delta,
                                        const std::function<bool()>& cancelled) {
  const absl::Time start = absl::Now();
  if (params.question.empty()) return absl::InvalidArgumentError("the question is empty");
  if (static_cast<int64_t>(params.question.size()) > options_.max_question_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("the question is ", params.question.size(),
                                                   " bytes; the limit is ",
                                                   options_.max_question_bytes));
  }
  if (!engine::IsValidUtf8(params.question)) {
    return absl::InvalidArgumentError("the question is not valid UTF-8");
  }
  if (params.max_tokens < 0 || params.max_tokens > options_.max_generated_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be in [0, ",
                                                   options_.max_generated_tokens, "]"));
  }
  if (!(params.temperature >= 0 && params.temperature <= 10) ||
      !(params.top_p >= 0 && params.top_p <= 1)) {
    return absl::InvalidArgumentError("temperature must be in [0, 10] and top_p in [0, 1]");
  }
  TOME_ASSIGN_OR_RETURN(DocumentRecord record, store_->GetDocument(kDefaultTenant, id));
  if (record.num_tokens == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("document ", id, " has no text yet; append text before asking"));
  }
  AskResult result;
  const int64_t watermark_at_start = record.state_tokens;
  if (record.state_tokens < record.num_tokens || record.status != DocumentStatus::kReady) {
    TOME_ASSIGN_OR_RETURN(record, ingestion_->WaitUntilIngested(id, params.deadline, cancelled));
  }
  result.document_prefill_tokens = record.state_tokens - watermark_at_start;
  const absl::Time queued = absl::Now();

  std::shared_ptr<const engine::Sequence> base = cache_->Get(id, record.state_tokens);
  result.state_source = base ? "memory" : "store";
  if (!base) {
    StoreSource source(store_.get(), kDefaultTenant, id);
    TOME_ASSIGN_OR_RETURN(std::unique_ptr<engine::Sequence> loaded,
                          engine_->LoadState(record.state_tokens, source));
    base = std::move(loaded);
    cache_->Put(id, base);
    LOG(INFO) << "restored document " << id << " (" << record.state_tokens << " tokens, "
              << source.bytes_read() << " bytes) from the store; no document token prefilled";
  }
  TOME_ASSIGN_OR_RETURN(std::unique_ptr<engine::Sequence> sequence, engine_->Fork(*base));
  const absl::Time loaded = absl::Now();

  TOME_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, prompt_->Question(params.question));
  TOME_ASSIGN_OR_RETURN(std::vector<float> logits, engine_->Prefill(*sequence, prompt));
  const absl::Time prefilled = absl::Now();

  engine::GenerateOptions generate;
  generate.max_new_tokens = params.max_tokens > 0 ? params.max_tokens : options_.default_max_tokens;
  generate.sampling.temperature = params.temperature;
  generate.sampling.top_p = params.top_p > 0 ? params.top_p : 1.0f;
  generate.sampling.seed = params.seed;
  generate.stop_tokens = prompt_->StopTokens();
  engine::StreamDecoder decoder(&engine_->tokenizer());
  absl::Time first_token = absl::InfiniteFuture();
  bool stopped_by_client = false;
  generate.on_token = [&](int32_t token) {
    if (first_token == absl::InfiniteFuture()) first_token = absl::Now();
    const std::string piece = decoder.Next(token);
    result.answer += piece;
    if (!piece.empty() && !on_delta(piece)) stopped_by_client = true;
    if (cancelled()) stopped_by_client = true;
    return !stopped_by_client;
  };
  TOME_ASSIGN_OR_RETURN(engine::GenerateResult generated,
                        engine_->Generate(*sequence, std::move(logits), generate));
  if (stopped_by_client) return absl::CancelledError("the client cancelled the call");
  const std::string rest = decoder.Flush();
  if (!rest.empty()) {
    result.answer += rest;
    on_delta(rest);
  }
  const absl::Time end = absl::Now();
  result.stop_reason = generated.stopped_by_eos ? "eos" : "max_tokens";
  result.document_tokens = record.state_tokens;
  result.prompt_tokens = static_cast<int64_t>(prompt.size());
  result.generated_tokens = static_cast<int64_t>(generated.tokens.size());
  result.queue_ms = Ms(queued - start);
  result.load_state_ms = Ms(loaded - queued);
  result.prefill_ms = Ms(prefilled - loaded);
  result.first_token_ms = Ms((first_token == absl::InfiniteFuture() ? end : first_token) - start);
  result.total_ms = Ms(end - start);
  const double decode_s = absl::ToDoubleSeconds(end - prefilled);
  result.decode_tokens_per_second = decode_s > 0 ? result.generated_tokens / decode_s : 0;
  return result;
}

}  // namespace tome::services
