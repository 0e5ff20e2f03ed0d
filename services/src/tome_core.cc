#include "tome_core.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
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

bool IsUtf8Boundary(const std::string& text, int64_t offset) {
  return offset == static_cast<int64_t>(text.size()) ||
         (static_cast<unsigned char>(text[offset]) & 0xc0) != 0x80;
}

}  // namespace

int64_t DefaultCheckpointTokens(const engine::StateSizes& sizes) {
  constexpr int64_t kGranule = 1024;
  const double kv = std::max<double>(1.0, static_cast<double>(sizes.kv_bytes_per_token));
  const int64_t tokens = static_cast<int64_t>(std::ceil(sizes.lightning_bytes / (0.1 * kv)));
  return std::max(kGranule, (tokens + kGranule - 1) / kGranule * kGranule);
}

absl::StatusOr<std::unique_ptr<TomeCore>> TomeCore::Create(const CoreOptions& options) {
  std::unique_ptr<TomeCore> core(new TomeCore(options));
  engine::EngineOptions engine_options;
  engine_options.model_dir = options.model_dir;
  engine_options.num_threads = options.num_threads;
  engine_options.dense_mode = options.dense_mode;
  engine_options.max_chunk_tokens = options.max_chunk_tokens;
  TOME_ASSIGN_OR_RETURN(core->engine_, engine::Engine::Create(engine_options));
  TOME_ASSIGN_OR_RETURN(core->fingerprint_, ComputeModelFingerprint(options.model_dir));
  core->checkpoint_tokens_ = options.checkpoint_tokens > 0
                                 ? options.checkpoint_tokens
                                 : DefaultCheckpointTokens(core->engine_->state_sizes());
  core->prompt_ = std::make_unique<engine::PromptFormat>(&core->engine_->tokenizer());
  storage::StoreOptions store_options;
  store_options.model_fingerprint = core->fingerprint_;
  store_options.sync_writes = options.sync_writes;
  TOME_ASSIGN_OR_RETURN(core->store_, storage::ContextStore::Open(options.data_dir, store_options));
  core->cache_ = std::make_unique<DocumentStateCache>(options.state_cache_bytes);
  IngestionOptions ingestion_options;
  ingestion_options.checkpoint_tokens = core->checkpoint_tokens_;
  core->ingestion_ = std::make_unique<IngestionManager>(
      core->engine_.get(), core->store_.get(), core->cache_.get(), ingestion_options);
  TOME_RETURN_IF_ERROR(core->ingestion_->Start());
  LOG(INFO) << "model " << options.model_dir << " (" << core->engine_->config().NumParameters()
            << " parameters, fingerprint " << core->fingerprint_ << ", tokenizer "
            << core->engine_->tokenizer().name() << "), data in " << options.data_dir
            << ", checkpoint every " << core->checkpoint_tokens_ << " tokens";
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

absl::StatusOr<AppendResult> TomeCore::AppendText(DocumentId id, const std::string& text,
                                                  const std::vector<SectionStart>& sections) {
  if (text.empty()) return absl::InvalidArgumentError("the text to append is empty");
  if (static_cast<int64_t>(text.size()) > options_.max_document_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the text is ", text.size(), " bytes; this server accepts at most ",
        options_.max_document_bytes, " bytes per AppendText call (split it into several calls)"));
  }
  if (!engine::IsValidUtf8(text)) {
    return absl::InvalidArgumentError("the text is not valid UTF-8");
  }
  for (size_t i = 0; i < sections.size(); ++i) {
    const int64_t at = sections[i].byte_offset;
    if (at < 0 || at > static_cast<int64_t>(text.size()) || !IsUtf8Boundary(text, at) ||
        (i > 0 && at <= sections[i - 1].byte_offset)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "section '", sections[i].name, "' must start at a character boundary after the "
          "previous section"));
    }
  }
  TOME_ASSIGN_OR_RETURN(DocumentRecord before, store_->GetDocument(kDefaultTenant, id));
  if (before.status == DocumentStatus::kFailed) {
    return absl::FailedPreconditionError(absl::StrCat(
        "document ", id, " failed to ingest (", before.error, "); delete and re-create it"));
  }
  // Each section is tokenized on its own, so that it starts on a token boundary.
  std::vector<int32_t> tokens;
  if (before.num_tokens == 0) tokens = prompt_->DocumentHeader();
  std::vector<storage::NewSection> new_sections;
  int64_t done = 0;
  for (size_t i = 0; i <= sections.size(); ++i) {
    const int64_t next = i < sections.size() ? sections[i].byte_offset
                                             : static_cast<int64_t>(text.size());
    if (next > done) {
      TOME_ASSIGN_OR_RETURN(std::vector<int32_t> piece,
                            prompt_->DocumentText(absl::string_view(text).substr(done, next - done)));
      tokens.insert(tokens.end(), piece.begin(), piece.end());
    }
    if (i < sections.size()) {
      new_sections.push_back({sections[i].name, next, static_cast<int64_t>(tokens.size())});
    }
    done = next;
  }
  TOME_ASSIGN_OR_RETURN(DocumentRecord record,
                        store_->AppendText(kDefaultTenant, id, text, tokens, new_sections));
  ingestion_->Enqueue(id);
  return AppendResult{record, static_cast<int64_t>(text.size()),
                      static_cast<int64_t>(tokens.size())};
}

absl::StatusOr<std::vector<storage::SectionInfo>> TomeCore::ListSections(DocumentId id) {
  return store_->ListSections(kDefaultTenant, id);
}

absl::StatusOr<std::shared_ptr<const engine::Sequence>> TomeCore::StateAt(
    const DocumentRecord& record, int64_t num_tokens, int64_t* recomputed, std::string* source) {
  *recomputed = 0;
  if (num_tokens > record.state_tokens) {
    return absl::FailedPreconditionError(absl::StrCat(
        "document ", record.id, " has state for ", record.state_tokens, " tokens, not ",
        num_tokens));
  }
  if (auto cached = cache_->Get(record.id, num_tokens)) {
    *source = "memory";
    return cached;
  }
  // The nearest checkpoint at or before num_tokens.
  int64_t base = 0;
  for (int64_t c : record.checkpoints) {
    if (c <= num_tokens) base = c;
  }
  std::unique_ptr<engine::Sequence> sequence;
  if (base == 0) {
    TOME_ASSIGN_OR_RETURN(sequence, engine_->NewSequence());
  } else {
    StoreSource store_source(store_.get(), kDefaultTenant, record.id);
    TOME_ASSIGN_OR_RETURN(sequence, engine_->LoadState(base, store_source));
    LOG(INFO) << "restored document " << record.id << " at token " << base << " ("
              << store_source.bytes_read() << " bytes) from the store";
  }
  *source = "store";
  if (base < num_tokens) {
    TOME_ASSIGN_OR_RETURN(std::vector<int32_t> tokens,
                          store_->ReadTokens(kDefaultTenant, record.id, base, num_tokens));
    TOME_RETURN_IF_ERROR(engine_->Prefill(*sequence, tokens).status());
    *recomputed = num_tokens - base;
  }
  std::shared_ptr<const engine::Sequence> state = std::move(sequence);
  if (num_tokens == record.state_tokens) cache_->Put(record.id, state);
  return state;
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
  int64_t target = record.num_tokens;  // the tokens the answer is conditioned on
  if (params.version != 0) {
    auto v = std::find_if(record.versions.begin(), record.versions.end(),
                          [&](const storage::VersionInfo& info) {
                            return info.version == params.version;
                          });
    if (v == record.versions.end()) {
      return absl::NotFoundError(absl::StrCat("document ", id, " has no version ",
                                              params.version, " (it has ", record.version,
                                              ")"));
    }
    target = v->num_tokens;
  }
  AskResult result;
  const int64_t watermark_at_start = record.state_tokens;
  if (record.state_tokens < target) {
    TOME_ASSIGN_OR_RETURN(record, ingestion_->WaitUntilIngested(id, params.deadline, cancelled));
  }
  const absl::Time queued = absl::Now();
  int64_t recomputed = 0;
  TOME_ASSIGN_OR_RETURN(std::shared_ptr<const engine::Sequence> base,
                        StateAt(record, target, &recomputed, &result.state_source));
  result.document_prefill_tokens =
      std::max<int64_t>(0, std::min(record.state_tokens, target) - watermark_at_start) +
      recomputed;
  record.state_tokens = target;
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
