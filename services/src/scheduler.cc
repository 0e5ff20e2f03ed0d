#include "scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tome::services {

BatchScheduler::BatchScheduler(engine::Engine* engine, int64_t chunk_tokens)
    : engine_(engine), chunk_tokens_(std::max<int64_t>(1, chunk_tokens)) {
  thread_ = std::thread([this] { Run(); });
}

BatchScheduler::~BatchScheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  // Anyone still waiting learns that the server is going away.
  for (auto& d : decodes_) d->done.set_value(absl::UnavailableError("the server is stopping"));
  for (auto& [tenant, queue] : prefills_) {
    for (auto& p : queue) p->done.set_value(absl::UnavailableError("the server is stopping"));
  }
}

absl::StatusOr<std::vector<float>> BatchScheduler::Decode(engine::Sequence* sequence,
                                                          int32_t token,
                                                          std::vector<double>* evidence) {
  auto item = std::make_unique<DecodeItem>();
  item->sequence = sequence;
  item->token = token;
  item->evidence = evidence;
  auto result = item->done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return absl::UnavailableError("the server is stopping");
    decodes_.push_back(std::move(item));
  }
  cv_.notify_one();
  return result.get();
}

absl::StatusOr<std::vector<float>> BatchScheduler::Prefill(engine::Sequence* sequence,
                                                           absl::Span<const int32_t> tokens,
                                                           storage::TenantId tenant,
                                                           const std::function<bool()>& cancelled) {
  if (tokens.empty()) return absl::InvalidArgumentError("no tokens to prefill");
  auto item = std::make_unique<PrefillItem>();
  item->sequence = sequence;
  item->tokens = tokens;
  item->cancelled = cancelled;
  auto result = item->done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return absl::UnavailableError("the server is stopping");
    auto& queue = prefills_[tenant];
    if (queue.empty()) turns_.push_back(tenant);
    queue.push_back(std::move(item));
  }
  cv_.notify_one();
  return result.get();
}

SchedulerStats BatchScheduler::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  SchedulerStats s = stats_;
  s.queued_decodes = static_cast<int64_t>(decodes_.size());
  s.queued_prefills = 0;
  for (const auto& [tenant, queue] : prefills_) s.queued_prefills += queue.size();
  return s;
}

void BatchScheduler::Run() {
  for (;;) {
    std::vector<std::unique_ptr<DecodeItem>> batch;
    bool prefill = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !decodes_.empty() || !turns_.empty(); });
      if (stop_) return;
      batch.swap(decodes_);
      prefill = !turns_.empty();
    }
    // One decode iteration for every answer waiting, then one prefill chunk: an answer's
    // next token never waits for more than one chunk.
    if (!batch.empty()) RunDecodeBatch(std::move(batch));
    if (prefill) RunPrefillChunk();
  }
}

void BatchScheduler::RunDecodeBatch(std::vector<std::unique_ptr<DecodeItem>> batch) {
  std::vector<engine::Sequence*> sequences;
  std::vector<int32_t> tokens;
  std::vector<std::vector<double>*> evidence;
  for (const auto& item : batch) {
    sequences.push_back(item->sequence);
    tokens.push_back(item->token);
    evidence.push_back(item->evidence);
  }
  auto logits = engine_->DecodeBatch(sequences, tokens, evidence);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.decode_batches;
    stats_.decode_steps += static_cast<int64_t>(batch.size());
    stats_.max_batch = std::max<int64_t>(stats_.max_batch, static_cast<int64_t>(batch.size()));
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    if (logits.ok()) {
      batch[i]->done.set_value(std::move((*logits)[i]));
    } else {
      batch[i]->done.set_value(logits.status());
    }
  }
}

void BatchScheduler::RunPrefillChunk() {
  PrefillItem* item = nullptr;
  storage::TenantId tenant = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (turns_.empty()) return;
    tenant = turns_.front();
    item = prefills_[tenant].front().get();
  }
  absl::StatusOr<std::vector<float>> result = std::vector<float>();
  bool finished = false;
  if (item->cancelled && item->cancelled()) {
    result = absl::CancelledError(absl::StrCat("prefill cancelled after ", item->next, " of ",
                                               item->tokens.size(), " tokens"));
    finished = true;
  } else {
    const size_t n = std::min<size_t>(chunk_tokens_, item->tokens.size() - item->next);
    result = engine_->Prefill(*item->sequence, item->tokens.subspan(item->next, n));
    item->next += n;
    finished = !result.ok() || item->next == item->tokens.size();
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.prefill_chunks;
    stats_.prefill_tokens += static_cast<int64_t>(n);
  }
  std::unique_ptr<PrefillItem> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // This tenant's turn is over: to the back of the line.
    turns_.pop_front();
    auto& queue = prefills_[tenant];
    if (finished) {
      done = std::move(queue.front());
      queue.pop_front();
    }
    if (!queue.empty()) turns_.push_back(tenant);
  }
  if (done) done->done.set_value(std::move(result));
}

}  // namespace tome::services
