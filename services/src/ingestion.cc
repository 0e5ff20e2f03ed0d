#include "ingestion.h"

#include <glog/logging.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "state_adapter.h"
#include "tome/base/status_macros.h"

namespace tome::services {

using storage::DocumentId;
using storage::DocumentRecord;
using storage::DocumentStatus;

IngestionManager::IngestionManager(engine::Engine* engine, BatchScheduler* scheduler,
                                   storage::ContextStore* store, DocumentStateCache* cache,
                                   IngestionOptions options)
    : engine_(engine), scheduler_(scheduler), store_(store), cache_(cache), options_(options) {}

IngestionManager::~IngestionManager() { Stop(); }

absl::Status IngestionManager::Start(const std::vector<storage::TenantId>& tenants) {
  for (storage::TenantId tenant : tenants) {
    DocumentId after = 0;
    for (;;) {
      TOME_ASSIGN_OR_RETURN(std::vector<DocumentRecord> page,
                            store_->ListDocuments(tenant, after, 1000));
      if (page.empty()) break;
      for (const DocumentRecord& r : page) {
        if (r.state_tokens < r.num_tokens && r.status != DocumentStatus::kFailed) {
          LOG(INFO) << "resuming ingestion of document " << r.id << " at token "
                    << r.state_tokens << " of " << r.num_tokens;
          Enqueue(tenant, r.id);
        }
      }
      after = page.back().id;
    }
  }
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void IngestionManager::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  progress_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void IngestionManager::Enqueue(storage::TenantId tenant, DocumentId doc) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    forgotten_.erase(doc);
    if (!queued_.insert(doc).second) return;
    queue_.emplace_back(tenant, doc);
  }
  work_cv_.notify_one();
}

void IngestionManager::Forget(DocumentId doc) {
  std::lock_guard<std::mutex> lock(mu_);
  forgotten_.insert(doc);
  progress_cv_.notify_all();
}

bool IngestionManager::Forgotten(DocumentId doc) {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_ || forgotten_.count(doc) > 0;
}

uint64_t IngestionManager::Subscribe(DocumentId doc, Listener listener) {
  auto entry = std::make_shared<Subscription>();
  entry->doc = doc;
  entry->listener = std::move(listener);
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = next_subscription_++;
  listeners_[id] = std::move(entry);
  return id;
}

void IngestionManager::Unsubscribe(uint64_t subscription) {
  std::shared_ptr<Subscription> entry;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = listeners_.find(subscription);
    if (it == listeners_.end()) return;
    entry = std::move(it->second);
    listeners_.erase(it);
  }
  // The listener usually refers to its subscriber's stack: wait for a call in progress.
  std::lock_guard<std::mutex> call_lock(entry->call_mu);
  entry->active = false;
}

void IngestionManager::Publish(const IngestionProgress& progress) {
  std::vector<std::shared_ptr<Subscription>> targets;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, entry] : listeners_) {
      if (entry->doc == progress.record.id) targets.push_back(entry);
    }
  }
  progress_cv_.notify_all();
  for (const auto& entry : targets) {
    std::lock_guard<std::mutex> call_lock(entry->call_mu);
    if (entry->active) entry->listener(progress);
  }
}

absl::StatusOr<DocumentRecord> IngestionManager::WaitUntilIngested(
    storage::TenantId tenant, DocumentId doc, absl::Time deadline,
    const std::function<bool()>& cancelled) {
  for (;;) {
    TOME_ASSIGN_OR_RETURN(DocumentRecord record, store_->GetDocument(tenant, doc));
    if (record.status == DocumentStatus::kFailed) {
      return absl::FailedPreconditionError(absl::StrCat(
          "ingestion of document ", doc, " failed: ", record.error,
          "; re-ingest it with ReingestDocument, or delete it"));
    }
    if (record.num_tokens > 0 && record.state_tokens == record.num_tokens) return record;
    if (cancelled && cancelled()) return absl::CancelledError("the call was cancelled");
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "document ", doc, " is still ingesting (", record.state_tokens, " of ",
          record.num_tokens, " tokens); try again later or watch it with WatchIngestion"));
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (stop_) return absl::UnavailableError("the server is shutting down");
    progress_cv_.wait_for(lock, absl::ToChronoNanoseconds(
                                    std::min(deadline - now, absl::Milliseconds(100))));
  }
}

void IngestionManager::Run() {
  for (;;) {
    storage::TenantId tenant;
    DocumentId doc;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      std::tie(tenant, doc) = queue_.front();
      queue_.pop_front();
      queued_.erase(doc);
    }
    bool done = true;
    absl::Status status = IngestSlice(tenant, doc, &done);
    if (!status.ok() && !Forgotten(doc)) {
      LOG(ERROR) << "ingestion of document " << doc << " failed: " << status;
      work_.erase(doc);  // its memory returns before anyone sees it FAILED
      store_->SetStatus(tenant, doc, DocumentStatus::kFailed, status.ToString()).IgnoreError();
      auto record = store_->GetDocument(tenant, doc);
      if (record.ok()) Publish({*record, 0, 0});
      continue;
    }
    if (done) {
      work_.erase(doc);
    } else {
      Enqueue(tenant, doc);  // take turns with other documents
    }
  }
}

bool IngestionManager::StorageBacked(int64_t tokens) const {
  return options_.block_cache != nullptr &&
         tokens * engine_->state_sizes().kv_bytes_per_token > options_.resident_kv_limit_bytes;
}

absl::StatusOr<std::unique_ptr<engine::Sequence>> IngestionManager::RestoreSequence(
    const DocumentRecord& record) {
  if (auto cached = cache_->Get(record.id, record.state_tokens)) return engine_->Fork(*cached);
  if (record.state_tokens == 0) return engine_->NewSequence();
  auto source = std::make_shared<StoreSource>(store_, record.tenant, record.id);
  if (StorageBacked(record.num_tokens)) {
    return engine_->LoadStateOnDemand(record.state_tokens, source, options_.block_cache,
                                      BlockSourceId(record));
  }
  return engine_->LoadState(record.state_tokens, *source);
}

absl::StatusOr<int64_t> IngestionManager::NextCheckpoint(const DocumentRecord& record,
                                                        Work& work) {
  const int64_t begin = record.state_tokens;
  int64_t end = std::min(record.num_tokens, begin + options_.checkpoint_tokens);
  for (const storage::VersionInfo& v : record.versions) {
    if (v.num_tokens > begin && v.num_tokens < end) end = v.num_tokens;
  }
  if (work.sections_version != record.version) {
    TOME_ASSIGN_OR_RETURN(std::vector<storage::SectionInfo> sections,
                          store_->ListSections(record.tenant, record.id));
    work.section_starts.clear();
    for (const auto& s : sections) work.section_starts.push_back(s.begin_token);
    work.sections_version = record.version;
  }
  const int64_t min_gap = std::max<int64_t>(1, options_.checkpoint_tokens / 4);
  for (int64_t start : work.section_starts) {
    if (start >= begin + min_gap && start < end) {
      end = start;
      break;
    }
  }
  return end;
}

absl::Status IngestionManager::ReserveMemory(DocumentId doc, int64_t tokens,
                                             int64_t document_tokens, Work& work) {
  if (options_.memory == nullptr) return absl::OkStatus();
  const engine::StateSizes sizes = engine_->state_sizes();
  // Storage-backed, KV stays resident for the current slice and the last blocks before it:
  // two slices' worth at most.
  const bool storage_backed = StorageBacked(document_tokens);
  auto state_bytes = [&](int64_t n) {
    const int64_t kv_tokens =
        storage_backed ? std::min(n, 2 * options_.checkpoint_tokens) : n;
    return sizes.lightning_bytes + n * sizes.summary_bytes_per_token +
           kv_tokens * sizes.kv_bytes_per_token;
  };
  const int64_t budget = options_.memory->budget_bytes();
  if (budget > 0 && state_bytes(document_tokens) > budget) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "ingesting this document (%d tokens) holds %.1f MiB of engine memory, more than "
        "--ingest_memory_mb (%.1f MiB) allows; raise it or split the document",
        document_tokens, state_bytes(document_tokens) / 1048576.0, budget / 1048576.0));
  }
  const int64_t need = state_bytes(tokens);
  if (need <= work.reserved_bytes) return absl::OkStatus();
  auto ticket = options_.memory->Acquire(need - work.reserved_bytes,
                                         absl::Now() + options_.memory_wait,
                                         [&] { return Forgotten(doc); });
  if (absl::IsResourceExhausted(ticket.status())) {
    return absl::UnavailableError(absl::StrFormat(
        "%.1f of %.1f MiB (--ingest_memory_mb) in use by ingestion",
        options_.memory->in_use_bytes() / 1048576.0, budget / 1048576.0));
  }
  TOME_RETURN_IF_ERROR(ticket.status());
  work.memory.push_back(*std::move(ticket));
  work.reserved_bytes = need;
  return absl::OkStatus();
}

absl::Status IngestionManager::IngestSlice(storage::TenantId tenant, DocumentId doc, bool* done) {
  *done = true;
  auto found = store_->GetDocument(tenant, doc);
  if (absl::IsNotFound(found.status())) return absl::OkStatus();  // deleted meanwhile
  TOME_RETURN_IF_ERROR(found.status());
  DocumentRecord record = *found;
  if (record.status == DocumentStatus::kFailed || record.state_tokens >= record.num_tokens) {
    return absl::OkStatus();
  }
  Work& work = work_[doc];
  const int64_t begin = record.state_tokens;
  TOME_ASSIGN_OR_RETURN(const int64_t end, NextCheckpoint(record, work));
  if (absl::Status reserved = ReserveMemory(doc, end, record.num_tokens, work);
      !reserved.ok()) {
    if (!absl::IsUnavailable(reserved)) return reserved;
    // Other ingestion holds the memory: let go of this state (its checkpoint is durable)
    // so that they can finish, and resume from the checkpoint later.
    LOG(INFO) << "ingestion of document " << doc << " lets go of its state and resumes from "
              << "token " << begin << " later: " << reserved.message();
    work.sequence.reset();
    work.memory.clear();
    work.reserved_bytes = 0;
    *done = false;
    return absl::OkStatus();
  }
  if (!work.sequence || work.sequence->num_tokens() != record.state_tokens) {
    TOME_ASSIGN_OR_RETURN(work.sequence, RestoreSequence(record));
    work.run_start_tokens = record.state_tokens;
    work.run_start = absl::Now();
  }
  TOME_ASSIGN_OR_RETURN(std::vector<int32_t> tokens,
                        store_->ReadTokens(tenant, doc, begin, end));
  if (static_cast<int64_t>(tokens.size()) != end - begin) {
    return absl::DataLossError(absl::StrCat("document ", doc, " is missing token ids [", begin,
                                            ", ", end, ")"));
  }
  auto logits = scheduler_->Prefill(work.sequence.get(), tokens, tenant,
                                    [&] { return Forgotten(doc); });
  if (!logits.ok()) {
    if (Forgotten(doc)) return absl::OkStatus();
    return logits.status();
  }
  tokens_prefilled_ += end - begin;

  std::unique_ptr<storage::ContextStore::Checkpoint> checkpoint =
      store_->BeginCheckpoint(tenant, doc);
  CheckpointSink sink(checkpoint.get());
  TOME_RETURN_IF_ERROR(engine_->SaveState(*work.sequence, begin, sink));
  if (end == record.num_tokens) {
    // The reservation ends before the commit makes the document READY, so that whoever sees
    // it READY also sees its memory returned; the state itself moves to the state cache.
    work.memory.clear();
    work.reserved_bytes = 0;
  }
  auto committed = store_->CommitCheckpoint(*checkpoint, end);
  if (absl::IsNotFound(committed.status())) return absl::OkStatus();  // deleted meanwhile
  TOME_RETURN_IF_ERROR(committed.status());
  record = *committed;
  if (StorageBacked(record.num_tokens)) {
    // The blocks just stored leave engine memory; later slices fetch those they select.
    TOME_RETURN_IF_ERROR(engine_->MoveBlocksToStorage(
        *work.sequence, std::make_shared<StoreSource>(store_, tenant, doc), options_.block_cache,
        BlockSourceId(record)));
  }

  IngestionProgress progress{record, 0, 0};
  const double seconds = absl::ToDoubleSeconds(absl::Now() - work.run_start);
  if (seconds > 0) {
    progress.tokens_per_second = (record.state_tokens - work.run_start_tokens) / seconds;
    if (progress.tokens_per_second > 0) {
      progress.eta_seconds =
          (record.num_tokens - record.state_tokens) / progress.tokens_per_second;
    }
  }
  if (record.state_tokens == record.num_tokens) {
    // The state cache (its own budget) takes the state.
    cache_->Put(doc, std::shared_ptr<const engine::Sequence>(std::move(work.sequence)));
    LOG(INFO) << "document " << doc << " ingested: " << record.num_tokens << " tokens, "
              << checkpoint->num_bytes() << " bytes in the last checkpoint";
  } else {
    *done = false;
  }
  Publish(progress);
  return absl::OkStatus();
}

}  // namespace tome::services
