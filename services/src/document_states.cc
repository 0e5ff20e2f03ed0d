#include "document_states.h"

namespace tome::services {

std::shared_ptr<const engine::Sequence> DocumentStateCache::Get(storage::DocumentId doc,
                                                                int64_t num_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(doc);
  if (it == entries_.end() || it->second.state->num_tokens() != num_tokens) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.state;
}

bool DocumentStateCache::Contains(storage::DocumentId doc, int64_t num_tokens) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(doc);
  return it != entries_.end() && it->second.state->num_tokens() == num_tokens;
}

void DocumentStateCache::Put(storage::DocumentId doc,
                             std::shared_ptr<const engine::Sequence> state) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(doc);
  if (it != entries_.end()) {
    bytes_ -= it->second.bytes;
    lru_.erase(it->second.lru);
    entries_.erase(it);
  }
  const int64_t bytes = state->OwnedBytes();
  lru_.push_front(doc);
  entries_[doc] = Entry{std::move(state), bytes, lru_.begin()};
  bytes_ += bytes;
  EvictLocked();
}

void DocumentStateCache::Erase(storage::DocumentId doc) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(doc);
  if (it == entries_.end()) return;
  bytes_ -= it->second.bytes;
  lru_.erase(it->second.lru);
  entries_.erase(it);
}

int64_t DocumentStateCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

void DocumentStateCache::EvictLocked() {
  // Keep at least the most recent entry even if it alone exceeds the budget.
  while (bytes_ > budget_bytes_ && lru_.size() > 1) {
    const storage::DocumentId victim = lru_.back();
    lru_.pop_back();
    auto it = entries_.find(victim);
    bytes_ -= it->second.bytes;
    entries_.erase(it);
  }
}

}  // namespace tome::services
