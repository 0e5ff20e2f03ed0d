// Optional host-side timing of storage-backed attention (TOME_FETCH_TIMES=1): wall time of
// each step a sparse layer of an on-demand sequence takes on the host to bring in its KV
// blocks (waiting for the selection, planning, the cache's store reads and uploads, the
// views), summed over the process, separately for prefill calls (a question's rows) and decode
// steps (one row), and printed to stderr at exit. Unlike TOME_CUDA_OP_TIMES it adds no
// synchronisation: it shows where an on-demand step's host time goes as it runs.
#pragma once

#include <chrono>
#include <cstdint>

namespace tome::engine {

enum class FetchPhase {
  kSelectionToHost,  // copying the selection to the host (waits for the queued work)
  kPlan,             // blocks to fetch, views of the resident pages
  kLookup,           // the block cache's tier lookups and bookkeeping
  kStoreRead,        // the block cache's reads from the StateSource
  kUpload,           // the block cache's slots, upload call (in-place reads are waited
                     // for) and LRU insertion
  kViews,            // fetched pages set into the views
  kAttention,        // the attention call on the views (page-table updates, launch)
  kCount,
};

// True when TOME_FETCH_TIMES is set to something other than "0".
bool FetchTimesEnabled();
void AddFetchTime(FetchPhase phase, std::chrono::steady_clock::duration d, int64_t items);

// Marks the phases timed on this thread while it lives as a decode step's (one query row) or a
// prefill call's.
class ScopedFetchCall {
 public:
  explicit ScopedFetchCall(bool decode);
  ~ScopedFetchCall();
  ScopedFetchCall(const ScopedFetchCall&) = delete;
  ScopedFetchCall& operator=(const ScopedFetchCall&) = delete;

 private:
  bool previous_;
};

// Times a scope into `phase` when enabled; `items` (blocks, say) can be set before it ends.
class ScopedFetchTime {
 public:
  explicit ScopedFetchTime(FetchPhase phase)
      : phase_(phase),
        enabled_(FetchTimesEnabled()),
        start_(enabled_ ? std::chrono::steady_clock::now()
                        : std::chrono::steady_clock::time_point()) {}
  ~ScopedFetchTime() {
    if (enabled_) AddFetchTime(phase_, std::chrono::steady_clock::now() - start_, items);
  }
  ScopedFetchTime(const ScopedFetchTime&) = delete;
  ScopedFetchTime& operator=(const ScopedFetchTime&) = delete;
  int64_t items = 0;

 private:
  FetchPhase phase_;
  bool enabled_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace tome::engine
