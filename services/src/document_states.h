// An in-memory cache of document states: for each document, the engine sequence at its last
// committed checkpoint. Questions fork from it (cheap; KV pages are shared). Evicts least
// recently used documents beyond a memory budget. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "tome/engine/engine.h"
#include "tome/storage/context_store.h"

namespace tome::services {

class DocumentStateCache {
 public:
  explicit DocumentStateCache(int64_t budget_bytes) : budget_bytes_(budget_bytes) {}

  // The cached state of `doc` if it holds exactly `num_tokens` tokens, else null.
  std::shared_ptr<const engine::Sequence> Get(storage::DocumentId doc, int64_t num_tokens);
  // Whether Get would find it (no effect on recency or the hit counters).
  bool Contains(storage::DocumentId doc, int64_t num_tokens) const;
  void Put(storage::DocumentId doc, std::shared_ptr<const engine::Sequence> state);
  void Erase(storage::DocumentId doc);
  int64_t bytes() const;
  int64_t hits() const { return hits_.load(); }
  int64_t misses() const { return misses_.load(); }

 private:
  struct Entry {
    std::shared_ptr<const engine::Sequence> state;
    int64_t bytes;
    std::list<storage::DocumentId>::iterator lru;
  };
  void EvictLocked();

  const int64_t budget_bytes_;
  mutable std::mutex mu_;
  std::unordered_map<storage::DocumentId, Entry> entries_;
  std::list<storage::DocumentId> lru_;  // front = most recent
  int64_t bytes_ = 0;
  std::atomic<int64_t> hits_{0}, misses_{0};
};

}  // namespace tome::services
