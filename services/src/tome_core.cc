#include "tome_core.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "model_fingerprint.h"
#include "state_adapter.h"
#include "tome/base/status_macros.h"

namespace tome::services {

using storage::DocumentId;
using storage::DocumentRecord;
using storage::DocumentStatus;
using storage::TenantId;

namespace {

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }
int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

absl::Status NotFoundDocument(DocumentId id) {
  return absl::NotFoundError(absl::StrCat("document ", id, " not found"));
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
  engine_options.device = options.device;
  engine_options.cuda_device = options.cuda_device;
  engine_options.tensor_parallel = options.tensor_parallel;
  engine_options.dense_mode = options.dense_mode;
  engine_options.max_chunk_tokens = options.max_chunk_tokens;
  engine_options.state_read_threads = options.fetch_threads;
  TOME_ASSIGN_OR_RETURN(core->engine_, engine::Engine::Create(engine_options));
  TOME_ASSIGN_OR_RETURN(core->fingerprint_, ComputeModelFingerprint(options.model_dir));
  // The CUDA engine keeps KV in bf16, the CPU engine in fp32: their stored states differ, so
  // a store written by one is another model's to the other (the rank count does not matter).
  if (options.device == engine::DeviceKind::kCuda) core->fingerprint_ += "+cuda-bf16";
  core->checkpoint_tokens_ = options.checkpoint_tokens > 0
                                 ? options.checkpoint_tokens
                                 : DefaultCheckpointTokens(core->engine_->state_sizes());
  core->prompt_ = std::make_unique<engine::PromptFormat>(&core->engine_->tokenizer());

  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create the data directory ", options.data_dir, ": ", ec.message()));
  }
  storage::StoreOptions store_options;
  store_options.model_fingerprint = core->fingerprint_;
  store_options.sync_writes = options.sync_writes;
  store_options.read_threads = options.store_read_threads;
  const std::string store_path = (std::filesystem::path(options.data_dir) / "store").string();
  TOME_ASSIGN_OR_RETURN(core->store_, storage::ContextStore::Open(store_path, store_options));
  core->tenants_ = std::make_unique<TenantRegistry>(core->store_.get());
  const std::string credentials =
      (std::filesystem::path(options.data_dir) / "bootstrap-credentials").string();
  TOME_RETURN_IF_ERROR(core->tenants_->Bootstrap(credentials));
  core->sessions_ = std::make_unique<SessionStore>(core->store_.get());
  core->session_states_ = std::make_unique<SessionStates>(options.session_states);
  core->cache_ = std::make_unique<DocumentStateCache>(options.state_cache_bytes);
  core->admission_ = std::make_unique<MemoryAdmission>(options.ask_memory_bytes, "--ask_memory_mb");
  core->block_cache_ = core->engine_->NewBlockCache(
      options.block_cache_bytes, options.host_block_cache_bytes, options.fetch_threads);
  TOME_RETURN_IF_ERROR(core->block_cache_->ReserveHostMemory());
  core->ingest_admission_ =
      std::make_unique<MemoryAdmission>(options.ingest_memory_bytes, "--ingest_memory_mb");
  IngestionOptions ingestion_options;
  ingestion_options.checkpoint_tokens = core->checkpoint_tokens_;
  if (options.ingest_memory_bytes > 0) ingestion_options.memory = core->ingest_admission_.get();
  ingestion_options.memory_wait = options.admission_wait;
  ingestion_options.resident_kv_limit_bytes = options.resident_kv_limit_bytes;
  ingestion_options.block_cache = core->block_cache_;
  core->scheduler_ = std::make_unique<BatchScheduler>(core->engine_.get(), options.max_chunk_tokens);
  core->ingestion_ = std::make_unique<IngestionManager>(core->engine_.get(), core->scheduler_.get(),
                                                        core->store_.get(), core->cache_.get(),
                                                        ingestion_options);
  TOME_ASSIGN_OR_RETURN(std::vector<TenantInfo> tenants, core->tenants_->ListTenants());
  std::vector<TenantId> tenant_ids;
  for (const TenantInfo& t : tenants) tenant_ids.push_back(t.id);
  TOME_RETURN_IF_ERROR(core->ingestion_->Start(tenant_ids));
  core->collector_ = std::thread([c = core.get()] { c->SessionCollector(); });
  LOG(INFO) << "model " << options.model_dir << " (" << core->engine_->config().NumParameters()
            << " parameters, fingerprint " << core->fingerprint_ << ", tokenizer "
            << core->engine_->tokenizer().name() << "), data in " << options.data_dir
            << " (credentials: " << credentials << "), checkpoint every "
            << core->checkpoint_tokens_ << " tokens";
  return core;
}

TomeCore::~TomeCore() {
  {
    std::lock_guard<std::mutex> lock(collector_mu_);
    stopping_ = true;
  }
  collector_cv_.notify_all();
  if (collector_.joinable()) collector_.join();
  if (ingestion_) ingestion_->Stop();
}

void TomeCore::SessionCollector() {
  std::unique_lock<std::mutex> lock(collector_mu_);
  while (!collector_cv_.wait_for(lock, std::chrono::seconds(60), [&] { return stopping_; })) {
    lock.unlock();
    auto deleted = CollectExpiredSessions();
    if (!deleted.ok()) LOG(WARNING) << "session collection failed: " << deleted.status();
    lock.lock();
  }
}

absl::StatusOr<int64_t> TomeCore::CollectExpiredSessions() {
  TOME_ASSIGN_OR_RETURN(int64_t deleted, sessions_->CollectExpired(NowMicros()));
  if (deleted > 0) LOG(INFO) << "deleted " << deleted << " expired sessions";
  return deleted;
}

absl::StatusOr<Principal> TomeCore::Authenticate(absl::string_view secret) {
  return tenants_->Authenticate(secret);
}

absl::StatusOr<Quotas> TomeCore::QuotasOf(TenantId tenant) {
  TOME_ASSIGN_OR_RETURN(TenantInfo info, tenants_->GetTenant(tenant));
  return info.quotas;
}

absl::StatusOr<std::unique_ptr<UsageTracker::CallSlot>> TomeCore::Admit(const Principal& caller) {
  if (caller.admin) return std::unique_ptr<UsageTracker::CallSlot>();
  TOME_ASSIGN_OR_RETURN(Quotas quotas, QuotasOf(caller.tenant));
  return usage_.Admit(caller.tenant, quotas);
}

// --- documents ----------------------------------------------------------------------------

absl::StatusOr<DocumentView> TomeCore::Readable(const Principal& caller, DocumentId id) {
  auto owner = store_->DocumentOwner(id);
  if (absl::IsNotFound(owner.status())) return NotFoundDocument(id);
  TOME_RETURN_IF_ERROR(owner.status());
  auto record = store_->GetDocument(*owner, id);
  if (absl::IsNotFound(record.status())) return NotFoundDocument(id);
  TOME_RETURN_IF_ERROR(record.status());
  const bool owned = *owner == caller.tenant;
  const bool shared = record->is_public ||
                      std::find(record->shared_with.begin(), record->shared_with.end(),
                                caller.tenant) != record->shared_with.end();
  if (!owned && !shared) return NotFoundDocument(id);  // indistinguishable from absent
  return DocumentView{std::move(*record), owned};
}

absl::StatusOr<DocumentRecord> TomeCore::Owned(const Principal& caller, DocumentId id) {
  TOME_ASSIGN_OR_RETURN(DocumentView view, Readable(caller, id));
  if (!view.owned) {
    return absl::PermissionDeniedError(absl::StrCat(
        "document ", id, " is shared with you read-only; only its owner may change it"));
  }
  return std::move(view.record);
}

absl::StatusOr<int64_t> TomeCore::StoredBytes(const DocumentRecord& record) {
  return store_->DocumentBytes(record.tenant, record.id);
}

absl::StatusOr<int64_t> TomeCore::TenantStoredBytes(TenantId tenant) {
  const engine::StateSizes sizes = engine_->state_sizes();
  int64_t total = 0;
  DocumentId after = 0;
  for (;;) {
    TOME_ASSIGN_OR_RETURN(auto page, store_->ListDocuments(tenant, after, 1000));
    if (page.empty()) break;
    for (const DocumentRecord& r : page) {
      total += r.text_bytes + 4 * r.num_tokens +
               (sizes.kv_bytes_per_token + sizes.summary_bytes_per_token) * r.num_tokens +
               sizes.lightning_bytes * static_cast<int64_t>(r.checkpoints.size() + 1);
    }
    after = page.back().id;
  }
  return total;
}

absl::StatusOr<DocumentView> TomeCore::CreateDocument(const Principal& caller,
                                                      const std::string& name,
                                                      DocumentId chosen_id) {
  TOME_ASSIGN_OR_RETURN(Quotas quotas, QuotasOf(caller.tenant));
  if (quotas.max_documents > 0) {
    TOME_ASSIGN_OR_RETURN(auto existing,
                          store_->ListDocuments(caller.tenant, 0, quotas.max_documents));
    if (static_cast<int64_t>(existing.size()) >= quotas.max_documents) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "quota max_documents: this tenant already has ", existing.size(),
          " documents (its limit); delete one first"));
    }
  }
  TOME_ASSIGN_OR_RETURN(DocumentRecord record,
                        chosen_id == 0
                            ? store_->CreateDocument(caller.tenant, name)
                            : store_->CreateDocumentWithId(caller.tenant, chosen_id, name));
  return DocumentView{std::move(record), true};
}

absl::StatusOr<DocumentView> TomeCore::GetDocument(const Principal& caller, DocumentId id) {
  return Readable(caller, id);
}

absl::StatusOr<std::vector<DocumentView>> TomeCore::ListDocuments(const Principal& caller,
                                                                  DocumentId after, int limit,
                                                                  bool include_shared) {
  std::vector<DocumentView> out;
  TOME_ASSIGN_OR_RETURN(auto own, store_->ListDocuments(caller.tenant, after, limit));
  for (auto& r : own) out.push_back({std::move(r), true});
  if (include_shared) {
    TOME_ASSIGN_OR_RETURN(std::vector<TenantInfo> tenants, tenants_->ListTenants());
    for (const TenantInfo& t : tenants) {
      if (t.id == caller.tenant) continue;
      DocumentId from = after;
      for (;;) {
        TOME_ASSIGN_OR_RETURN(auto page, store_->ListDocuments(t.id, from, 1000));
        if (page.empty()) break;
        for (auto& r : page) {
          if (std::count(r.shared_with.begin(), r.shared_with.end(), caller.tenant)) {
            out.push_back({std::move(r), false});
          }
        }
        from = page.back().id;
      }
    }
    std::sort(out.begin(), out.end(),
              [](const auto& a, const auto& b) { return a.record.id < b.record.id; });
    if (static_cast<int>(out.size()) > limit) out.resize(limit);
  }
  return out;
}

absl::Status TomeCore::DeleteDocument(const Principal& caller, DocumentId id) {
  TOME_ASSIGN_OR_RETURN(DocumentRecord record, Owned(caller, id));
  ingestion_->Forget(id);
  cache_->Erase(id);
  return store_->DeleteDocument(record.tenant, id);
}

absl::StatusOr<DocumentView> TomeCore::ShareDocument(const Principal& caller, DocumentId id,
                                                     const std::vector<TenantId>& tenants,
                                                     bool is_public) {
  TOME_ASSIGN_OR_RETURN(DocumentRecord record, Owned(caller, id));
  for (TenantId t : tenants) {
    // A cluster worker knows only the tenants that called it; the router checked these.
    if (options_.peer_token.empty() && !tenants_->GetTenant(t).ok()) {
      return absl::InvalidArgumentError(absl::StrCat("there is no tenant ", t));
    }
  }
  TOME_ASSIGN_OR_RETURN(DocumentRecord shared,
                        store_->SetSharing(record.tenant, id, is_public, tenants));
  return DocumentView{std::move(shared), true};
}

absl::StatusOr<DocumentView> TomeCore::ReingestDocument(const Principal& caller, DocumentId id) {
  TOME_ASSIGN_OR_RETURN(DocumentRecord record, Owned(caller, id));
  if (record.status != DocumentStatus::kFailed) {
    // A document still ingesting has a checkpoint in flight that a reset would race with.
    return absl::FailedPreconditionError(absl::StrCat(
        "document ", id, " has not failed; only a FAILED document is re-ingested"));
  }
  cache_->Erase(id);
  TOME_ASSIGN_OR_RETURN(DocumentRecord reset, store_->ResetState(record.tenant, id));
  LOG(INFO) << "document " << id << ": model state discarded; re-ingesting "
            << reset.num_tokens << " tokens";
  if (reset.num_tokens > 0) ingestion_->Enqueue(record.tenant, id);
  return DocumentView{std::move(reset), true};
}

void TomeCore::MarkStateDamaged(const DocumentRecord& record, const absl::Status& error) {
  // Unavailable / ResourceExhausted are the store's I/O and disk-full errors: the state may
  // be fine once the disk is. Everything else from LoadState is about the records read.
  if (absl::IsUnavailable(error) || absl::IsResourceExhausted(error) ||
      absl::IsCancelled(error) || absl::IsDeadlineExceeded(error)) {
    return;
  }
  const std::string message = absl::StrCat(
      "the stored model state is damaged (", error.message(),
      "); re-ingest the document from its text with ReingestDocument, or delete it");
  LOG(ERROR) << "document " << record.id << " of tenant " << record.tenant << ": " << message;
  cache_->Erase(record.id);
  const absl::Status marked =
      store_->SetStatus(record.tenant, record.id, DocumentStatus::kFailed, message);
  if (!marked.ok()) LOG(ERROR) << "cannot mark document " << record.id << " failed: " << marked;
}

absl::Status TomeCore::LoadedOrDamaged(const DocumentRecord& record,
                                       const engine::Sequence& sequence, absl::Status status) {
  if (status.ok()) return status;
  const absl::Status load = sequence.LoadStatus();
  if (load.ok()) return status;
  MarkStateDamaged(record, load);
  return load;
}

absl::StatusOr<std::vector<storage::SectionInfo>> TomeCore::ListSections(const Principal& caller,
                                                                         DocumentId id) {
  TOME_ASSIGN_OR_RETURN(DocumentView view, Readable(caller, id));
  return store_->ListSections(view.record.tenant, id);
}

absl::StatusOr<AppendResult> TomeCore::AppendText(const Principal& caller, DocumentId id,
                                                  const std::string& text,
                                                  const std::vector<SectionStart>& sections) {
  TOME_RETURN_IF_ERROR(ValidateAppend(text, sections, Limits()));
  TOME_ASSIGN_OR_RETURN(DocumentRecord before, Owned(caller, id));
  if (before.status == DocumentStatus::kFailed) {
    return absl::FailedPreconditionError(absl::StrCat(
        "document ", id, " failed to ingest (", before.error,
        "); re-ingest it with ReingestDocument, or delete it"));
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
  // Quotas: bytes stored (estimated after this append) and tokens per minute.
  TOME_ASSIGN_OR_RETURN(Quotas quotas, QuotasOf(caller.tenant));
  if (quotas.max_stored_bytes > 0) {
    const engine::StateSizes sizes = engine_->state_sizes();
    TOME_ASSIGN_OR_RETURN(int64_t stored, TenantStoredBytes(caller.tenant));
    const int64_t adding =
        static_cast<int64_t>(text.size()) +
        static_cast<int64_t>(tokens.size()) *
            (4 + sizes.kv_bytes_per_token + sizes.summary_bytes_per_token);
    if (stored + adding > quotas.max_stored_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "quota max_stored_bytes: this tenant stores about ", stored, " bytes and the text "
          "would add about ", adding, ", over its limit of ", quotas.max_stored_bytes,
          "; delete documents or ask for a larger quota"));
    }
  }
  TOME_RETURN_IF_ERROR(usage_.ChargeTokens(caller.tenant, static_cast<int64_t>(tokens.size()), quotas));
  TOME_ASSIGN_OR_RETURN(DocumentRecord record,
                        store_->AppendText(caller.tenant, id, text, tokens, new_sections));
  ingestion_->Enqueue(caller.tenant, id);
  return AppendResult{record, static_cast<int64_t>(text.size()),
                      static_cast<int64_t>(tokens.size())};
}

absl::Status TomeCore::WatchIngestion(
    const Principal& caller, DocumentId id,
    const std::function<bool(const IngestionProgress&)>& listener,
    const std::function<bool()>& cancelled) {
  TOME_ASSIGN_OR_RETURN(DocumentView view, Readable(caller, id));
  const TenantId owner = view.record.tenant;
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
    auto record = store_->GetDocument(owner, id);
    std::unique_lock<std::mutex> lock(mu);
    if (!record.ok()) {
      status = record.status();
    } else if (!finished && finish_if_final(IngestionProgress{*record, 0, 0})) {
      finished = true;
    }
    while (status.ok() && !finished) {
      if (cancelled()) break;
      cv.wait_for(lock, std::chrono::milliseconds(100));
      if (!finished && absl::IsNotFound(store_->GetDocument(owner, id).status())) {
        status = absl::NotFoundError(absl::StrCat("document ", id, " was deleted"));
      }
    }
  }
  ingestion_->Unsubscribe(subscription);
  return status;
}

// --- state --------------------------------------------------------------------------------

absl::StatusOr<std::shared_ptr<const engine::Sequence>> TomeCore::StateAt(
    const DocumentRecord& record, int64_t num_tokens, int64_t* recomputed, std::string* source) {
  *recomputed = 0;
  if (num_tokens > record.state_tokens) {
    return absl::FailedPreconditionError(absl::StrCat(
        "document ", record.id, " has state for ", record.state_tokens, " tokens, not ",
        num_tokens));
  }
  if (auto cached = cache_->Get(record.id, num_tokens)) {
    if (const absl::Status load = cached->LoadStatus(); !load.ok()) {
      MarkStateDamaged(record, load);  // read in the background after it was cached
      return load;
    }
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
    // A state with too much KV to hold whole is opened on demand: its KV blocks are read
    // when selected. The cache id names this document's life (a re-created id gets a new
    // creation time).
    const bool on_demand = OpensOnDemand(base);
    auto store_source = std::make_shared<StoreSource>(store_.get(), record.tenant, record.id);
    auto loaded = on_demand
                      ? engine_->LoadStateOnDemand(
                            base, store_source, block_cache_, BlockSourceId(record))
                      : engine_->LoadState(base, *store_source);
    if (!loaded.ok()) {
      MarkStateDamaged(record, loaded.status());
      return loaded.status();
    }
    sequence = std::move(loaded).value();
    // On demand, the summaries are still being read when this is logged (the next forward
    // pass takes them), so the count is of what was read before the open returned.
    LOG(INFO) << (on_demand ? "opened document " : "restored document ") << record.id
              << " at token " << base << (on_demand ? " on demand (" : " (")
              << store_source->bytes_read()
              << (on_demand ? " bytes read before the open returned)" : " bytes read)")
              << " from the store";
  }
  *source = "store";
  if (base < num_tokens) {
    TOME_ASSIGN_OR_RETURN(std::vector<int32_t> tokens,
                          store_->ReadTokens(record.tenant, record.id, base, num_tokens));
    TOME_RETURN_IF_ERROR(LoadedOrDamaged(
        record, *sequence, scheduler_->Prefill(sequence.get(), tokens, record.tenant).status()));
    *recomputed = num_tokens - base;
  }
  std::shared_ptr<const engine::Sequence> state = std::move(sequence);
  if (num_tokens == record.state_tokens) cache_->Put(record.id, state);
  return state;
}

// --- questions ----------------------------------------------------------------------------

absl::Status TomeCore::Answer(const Principal& caller, engine::Sequence& sequence,
                              std::vector<float> logits, const AskParams& params,
                              const DocumentRecord& record, int64_t doc_tokens,
                              const std::function<bool(const std::string&)>& on_delta,
                              const std::function<bool()>& cancelled, AskResult* result,
                              engine::GenerateResult* generated) {
  engine::GenerateOptions generate;
  generate.max_new_tokens =
      params.max_tokens > 0 ? params.max_tokens : options_.default_max_tokens;
  generate.sampling.temperature = params.temperature;
  generate.sampling.top_p = params.top_p > 0 ? params.top_p : 1.0f;
  generate.sampling.seed = params.seed;
  generate.stop_tokens = prompt_->StopTokens();
  std::vector<double> evidence;
  if (params.max_citations > 0) generate.block_evidence = &evidence;
  // Every decode step goes through the scheduler, batched with other answers' steps.
  generate.decode_step = [&](int32_t token) {
    return scheduler_->Decode(&sequence, token, generate.block_evidence);
  };
  engine::StreamDecoder decoder(&engine_->tokenizer());
  const absl::Time start = absl::Now();
  absl::Time first_token = absl::InfiniteFuture();
  bool stopped_by_client = false;
  generate.on_token = [&](int32_t token) {
    if (first_token == absl::InfiniteFuture()) first_token = absl::Now();
    const std::string piece = decoder.Next(token);
    result->answer += piece;
    if (!piece.empty() && !on_delta(piece)) stopped_by_client = true;
    if (cancelled()) stopped_by_client = true;
    return !stopped_by_client;
  };
  TOME_ASSIGN_OR_RETURN(*generated, engine_->Generate(sequence, std::move(logits), generate));
  usage_.RecordTokens(caller.tenant, static_cast<int64_t>(generated->tokens.size()));
  generated_tokens_ += static_cast<int64_t>(generated->tokens.size());
  if (stopped_by_client) return absl::CancelledError("the client cancelled the call");
  const std::string rest = decoder.Flush();
  if (!rest.empty()) {
    result->answer += rest;
    on_delta(rest);
  }
  const absl::Time end = absl::Now();
  result->stop_reason = generated->stopped_by_eos ? "eos" : "max_tokens";
  result->generated_tokens = static_cast<int64_t>(generated->tokens.size());
  result->first_token_ms = Ms((first_token == absl::InfiniteFuture() ? end : first_token) - start);
  const double decode_s = absl::ToDoubleSeconds(end - start);
  result->decode_tokens_per_second = decode_s > 0 ? result->generated_tokens / decode_s : 0;
  if (params.max_citations > 0) {
    TOME_ASSIGN_OR_RETURN(result->citations,
                          Cite(record, doc_tokens, evidence, params.max_citations));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Citation>> TomeCore::Cite(const DocumentRecord& record,
                                                     int64_t doc_tokens,
                                                     const std::vector<double>& evidence,
                                                     int max) {
  const int64_t B = engine_->config().sparse.block_size;
  // Candidate blocks lie wholly inside the document (not the question or the answer).
  std::vector<std::pair<double, int64_t>> ranked;
  double total = 0;
  for (int64_t b = 0; b < static_cast<int64_t>(evidence.size()); ++b) {
    if (evidence[b] <= 0 || (b + 1) * B > doc_tokens) continue;
    ranked.emplace_back(evidence[b], b);
    total += evidence[b];
  }
  std::sort(ranked.begin(), ranked.end(), std::greater<>());
  if (static_cast<int>(ranked.size()) > max) ranked.resize(max);
  if (ranked.empty()) return std::vector<Citation>();

  // Token offsets to byte offsets: tokenization restarts at each section and each append
  // (version), whose byte offsets are known; within one such segment a token covers the
  // bytes it decodes to.
  TOME_ASSIGN_OR_RETURN(std::vector<storage::SectionInfo> sections,
                        store_->ListSections(record.tenant, record.id));
  const int64_t header = static_cast<int64_t>(prompt_->DocumentHeader().size());
  std::vector<std::pair<int64_t, int64_t>> starts = {{header, 0}};  // (token, byte)
  for (const auto& v : record.versions) starts.emplace_back(v.num_tokens, v.text_bytes);
  for (const auto& sec : sections) starts.emplace_back(sec.begin_token, sec.begin_byte);
  std::sort(starts.begin(), starts.end());
  auto byte_at = [&](int64_t token) -> absl::StatusOr<int64_t> {
    auto it = std::upper_bound(starts.begin(), starts.end(), std::make_pair(token, INT64_MAX));
    const auto [t0, b0] = *std::prev(it);
    if (token <= t0) return b0;
    TOME_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                          store_->ReadTokens(record.tenant, record.id, t0, token));
    int64_t bytes = 0;
    for (int32_t id : ids) bytes += static_cast<int64_t>(engine_->tokenizer().TokenBytes(id).size());
    return b0 + bytes;
  };
  TOME_ASSIGN_OR_RETURN(std::string text, store_->ReadText(record.tenant, record.id));
  std::vector<Citation> out;
  for (const auto& [score, b] : ranked) {
    Citation c;
    TOME_ASSIGN_OR_RETURN(c.byte_begin, byte_at(std::max(b * B, header)));
    TOME_ASSIGN_OR_RETURN(c.byte_end, byte_at((b + 1) * B));
    c.byte_begin = std::clamp<int64_t>(c.byte_begin, 0, static_cast<int64_t>(text.size()));
    c.byte_end = std::clamp<int64_t>(c.byte_end, c.byte_begin, static_cast<int64_t>(text.size()));
    c.line_begin = 1 + std::count(text.begin(), text.begin() + c.byte_begin, '\n');
    c.line_end = c.line_begin + std::count(text.begin() + c.byte_begin,
                                           text.begin() + c.byte_end, '\n');
    int64_t snippet_end = std::min(c.byte_end, c.byte_begin + 400);
    while (snippet_end > c.byte_begin &&
           (static_cast<unsigned char>(text[snippet_end]) & 0xc0) == 0x80 &&
           snippet_end < static_cast<int64_t>(text.size())) {
      --snippet_end;  // whole UTF-8 characters only
    }
    int64_t snippet_begin = c.byte_begin;
    while (snippet_begin < snippet_end &&
           (static_cast<unsigned char>(text[snippet_begin]) & 0xc0) == 0x80) {
      ++snippet_begin;
    }
    c.snippet = text.substr(snippet_begin, snippet_end - snippet_begin);
    for (const auto& sec : sections) {
      if (sec.begin_token <= b * B) c.section = sec.name;
    }
    c.weight = score / total;
    out.push_back(std::move(c));
  }
  return out;
}

bool TomeCore::OpensOnDemand(int64_t tokens) const {
  return tokens * engine_->state_sizes().kv_bytes_per_token > options_.resident_kv_limit_bytes;
}

absl::StatusOr<MemoryAdmission::Ticket> TomeCore::AdmitQuestion(
    const AskParams& params, int64_t prompt_tokens, int64_t open_tokens,
    const std::function<bool()>& cancelled) {
  const engine::StateSizes sizes = engine_->state_sizes();
  const int64_t per_token = sizes.kv_bytes_per_token + sizes.summary_bytes_per_token;
  const int64_t answer_tokens =
      params.max_tokens > 0 ? params.max_tokens : options_.default_max_tokens;
  // The fork's own Lightning states and the tokens it adds; a state opened from the store:
  // all of its KV when it is held whole, its summaries when its KV stays in the store
  // (whose blocks come through the separately bounded block cache).
  int64_t bytes = sizes.lightning_bytes + (prompt_tokens + answer_tokens) * per_token;
  if (open_tokens > 0) {
    const bool on_demand = OpensOnDemand(open_tokens);
    bytes += sizes.lightning_bytes +
             open_tokens * (on_demand ? sizes.summary_bytes_per_token : per_token);
  }
  return admission_->Acquire(bytes, std::min(params.deadline, absl::Now() + options_.admission_wait),
                             cancelled);
}

absl::StatusOr<AskResult> TomeCore::Ask(const Principal& caller, const AskParams& params,
                                        const std::function<bool(const std::string&)>& on_delta,
                                        const std::function<bool()>& cancelled) {
  const absl::Time start = absl::Now();
  TOME_RETURN_IF_ERROR(ValidateAskParams(params, Limits()));
  if (!params.session_id.empty()) {
    return AskInSession(caller, params, on_delta, cancelled);
  }
  TOME_ASSIGN_OR_RETURN(DocumentView view, Readable(caller, params.document));
  DocumentRecord record = std::move(view.record);
  const DocumentId id = record.id;
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
    TOME_ASSIGN_OR_RETURN(record, ingestion_->WaitUntilIngested(record.tenant, id,
                                                                 params.deadline, cancelled));
  }
  TOME_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, prompt_->Question(params.question));
  TOME_ASSIGN_OR_RETURN(
      MemoryAdmission::Ticket memory,
      AdmitQuestion(params, static_cast<int64_t>(prompt.size()),
                    cache_->Contains(id, target) ? 0 : target, cancelled));
  const absl::Time queued = absl::Now();
  int64_t recomputed = 0;
  TOME_ASSIGN_OR_RETURN(std::shared_ptr<const engine::Sequence> base,
                        StateAt(record, target, &recomputed, &result.state_source));
  result.document_prefill_tokens =
      std::max<int64_t>(0, std::min(record.state_tokens, target) - watermark_at_start) +
      recomputed;
  TOME_ASSIGN_OR_RETURN(std::unique_ptr<engine::Sequence> sequence, engine_->Fork(*base));
  const absl::Time loaded = absl::Now();

  TOME_ASSIGN_OR_RETURN(Quotas quotas, QuotasOf(caller.tenant));
  TOME_RETURN_IF_ERROR(usage_.ChargeTokens(caller.tenant, static_cast<int64_t>(prompt.size()), quotas));
  absl::StatusOr<std::vector<float>> logits =
      scheduler_->Prefill(sequence.get(), prompt, caller.tenant, cancelled);
  TOME_RETURN_IF_ERROR(LoadedOrDamaged(record, *sequence, logits.status()));
  const absl::Time prefilled = absl::Now();

  engine::GenerateResult generated;
  TOME_RETURN_IF_ERROR(Answer(caller, *sequence, *std::move(logits), params, record, target,
                              on_delta, cancelled, &result, &generated));
  const absl::Time end = absl::Now();
  result.document_tokens = target;
  result.prompt_tokens = static_cast<int64_t>(prompt.size());
  result.queue_ms = Ms(queued - start);
  result.load_state_ms = Ms(loaded - queued);
  result.prefill_ms = Ms(prefilled - loaded);
  result.first_token_ms += Ms(prefilled - start);
  result.total_ms = Ms(end - start);
  return result;
}

absl::StatusOr<AskResult> TomeCore::AskInSession(
    const Principal& caller, const AskParams& params,
    const std::function<bool(const std::string&)>& on_delta,
    const std::function<bool()>& cancelled) {
  const absl::Time start = absl::Now();
  std::shared_ptr<std::mutex> turn_lock = session_states_->TurnLock(params.session_id);
  std::lock_guard<std::mutex> turn(*turn_lock);  // one turn of a session at a time
  TOME_ASSIGN_OR_RETURN(SessionInfo session,
                        sessions_->Get(caller.tenant, params.session_id, NowMicros()));
  TOME_ASSIGN_OR_RETURN(DocumentView view, Readable(caller, session.document));
  AskResult result;
  result.session_id = session.id;
  const int64_t context_tokens = session.doc_tokens + static_cast<int64_t>(session.tail.size());
  std::shared_ptr<engine::Sequence> sequence =
      session_states_->Get(session.id, context_tokens);
  TOME_ASSIGN_OR_RETURN(std::vector<int32_t> prompt,
                        session.turns == 0 ? prompt_->Question(params.question)
                                           : prompt_->FollowUp(params.question));
  // A session rebuilt from the store opens its document's state and re-reads its own turns.
  const int64_t open_tokens =
      sequence ? 0
               : static_cast<int64_t>(session.tail.size()) +
                     (cache_->Contains(view.record.id, session.doc_tokens) ? 0
                                                                           : session.doc_tokens);
  TOME_ASSIGN_OR_RETURN(MemoryAdmission::Ticket memory,
                        AdmitQuestion(params, static_cast<int64_t>(prompt.size()), open_tokens,
                                      cancelled));
  const absl::Time queued = absl::Now();
  result.state_source = "memory";
  if (!sequence) {
    // Rebuild: the document's stored state, then the session's own turns.
    int64_t recomputed = 0;
    std::string source;
    TOME_ASSIGN_OR_RETURN(auto base, StateAt(view.record, session.doc_tokens, &recomputed, &source));
    TOME_ASSIGN_OR_RETURN(std::unique_ptr<engine::Sequence> fork, engine_->Fork(*base));
    if (!session.tail.empty()) {
      TOME_RETURN_IF_ERROR(LoadedOrDamaged(
          view.record, *fork,
          scheduler_->Prefill(fork.get(), session.tail, caller.tenant, cancelled).status()));
    }
    result.document_prefill_tokens = recomputed;
    result.state_source = source;
    sequence = std::move(fork);
  }
  const absl::Time loaded = absl::Now();
  TOME_ASSIGN_OR_RETURN(Quotas quotas, QuotasOf(caller.tenant));
  TOME_RETURN_IF_ERROR(usage_.ChargeTokens(caller.tenant, static_cast<int64_t>(prompt.size()), quotas));
  absl::StatusOr<std::vector<float>> logits =
      scheduler_->Prefill(sequence.get(), prompt, caller.tenant, cancelled);
  if (const absl::Status prefilled = LoadedOrDamaged(view.record, *sequence, logits.status());
      !prefilled.ok()) {
    session_states_->Erase(session.id);
    return prefilled;
  }
  const absl::Time prefilled = absl::Now();
  engine::GenerateResult generated;
  absl::Status answered = Answer(caller, *sequence, *std::move(logits), params, view.record,
                                 session.doc_tokens, on_delta, cancelled, &result, &generated);
  if (!answered.ok()) {
    session_states_->Erase(session.id);  // the in-memory state is ahead of the stored turns
    return answered;
  }
  // Close the answer in the context as the model expects (and feed the last generated token,
  // which Generate does not feed when it stops at max_tokens).
  std::vector<int32_t> closing = prompt_->AnswerEnd();
  if (!generated.stopped_by_eos && !generated.tokens.empty()) {
    closing.insert(closing.begin(), generated.tokens.back());
  }
  TOME_RETURN_IF_ERROR(scheduler_->Prefill(sequence.get(), closing, caller.tenant).status());
  session.tail.insert(session.tail.end(), prompt.begin(), prompt.end());
  session.tail.insert(session.tail.end(), generated.tokens.begin(), generated.tokens.end());
  session.tail.insert(session.tail.end(), closing.begin() + (generated.stopped_by_eos ? 0 : 1),
                      closing.end());
  session.turns += 1;
  session.last_used_micros = NowMicros();
  TOME_RETURN_IF_ERROR(sessions_->Put(session));
  session_states_->Put(session.id, sequence);
  const absl::Time end = absl::Now();
  result.turn = session.turns;
  result.document_tokens = session.doc_tokens;
  result.prompt_tokens = static_cast<int64_t>(prompt.size());
  result.queue_ms = Ms(queued - start);
  result.load_state_ms = Ms(loaded - queued);
  result.prefill_ms = Ms(prefilled - loaded);
  result.first_token_ms += Ms(prefilled - start);
  result.total_ms = Ms(end - start);
  return result;
}

// --- sessions -----------------------------------------------------------------------------

absl::StatusOr<SessionInfo> TomeCore::CreateSession(const Principal& caller, DocumentId id,
                                                    int64_t version) {
  TOME_ASSIGN_OR_RETURN(DocumentView view, Readable(caller, id));
  const DocumentRecord& record = view.record;
  if (record.num_tokens == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("document ", id, " has no text yet; append text first"));
  }
  SessionInfo s;
  TOME_ASSIGN_OR_RETURN(s.id, SessionStore::NewId());
  s.tenant = caller.tenant;
  s.doc_owner = record.tenant;
  s.document = id;
  s.version = version == 0 ? record.version : version;
  auto v = std::find_if(record.versions.begin(), record.versions.end(),
                        [&](const storage::VersionInfo& info) { return info.version == s.version; });
  if (v == record.versions.end()) {
    return absl::NotFoundError(absl::StrCat("document ", id, " has no version ", version));
  }
  s.doc_tokens = v->num_tokens;
  s.created_micros = s.last_used_micros = NowMicros();
  TOME_ASSIGN_OR_RETURN(Quotas quotas, QuotasOf(caller.tenant));
  s.ttl_seconds = quotas.session_ttl_seconds > 0 ? quotas.session_ttl_seconds
                                                 : options_.default_session_ttl_seconds;
  TOME_RETURN_IF_ERROR(sessions_->Put(s));
  return s;
}

absl::StatusOr<SessionInfo> TomeCore::GetSession(const Principal& caller, const std::string& id) {
  return sessions_->Get(caller.tenant, id, NowMicros());
}

absl::StatusOr<std::vector<SessionInfo>> TomeCore::ListSessions(const Principal& caller,
                                                                DocumentId document) {
  return sessions_->List(caller.tenant, document, NowMicros());
}

absl::StatusOr<SessionInfo> TomeCore::ForkSession(const Principal& caller, const std::string& id) {
  TOME_ASSIGN_OR_RETURN(SessionInfo parent, sessions_->Get(caller.tenant, id, NowMicros()));
  SessionInfo child = parent;
  TOME_ASSIGN_OR_RETURN(child.id, SessionStore::NewId());
  child.parent = parent.id;
  child.created_micros = child.last_used_micros = NowMicros();
  TOME_RETURN_IF_ERROR(sessions_->Put(child));
  // Share the parent's in-memory state if it has one (KV pages are shared, copy-on-write).
  const int64_t tokens = parent.doc_tokens + static_cast<int64_t>(parent.tail.size());
  if (auto state = session_states_->Get(parent.id, tokens)) {
    auto fork = engine_->Fork(*state);
    if (fork.ok()) session_states_->Put(child.id, std::move(fork).value());
  }
  return child;
}

absl::Status TomeCore::DeleteSession(const Principal& caller, const std::string& id) {
  TOME_RETURN_IF_ERROR(sessions_->Get(caller.tenant, id, NowMicros()).status());
  session_states_->Erase(id);
  return sessions_->Delete(id);
}

}  // namespace tome::services
