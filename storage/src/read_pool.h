// Threads that read many records in parallel: a cold follow-up question reads thousands of
// KV blocks, and a disk serves them faster with several requests in flight than one by one.
#pragma once

#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tome::storage {

class ReadPool {
 public:
  // `threads` helpers besides the caller; 0 runs everything on the caller.
  explicit ReadPool(int threads);
  ~ReadPool();
  ReadPool(const ReadPool&) = delete;
  ReadPool& operator=(const ReadPool&) = delete;

  // Calls fn(i) for every i in [0, n), on the helpers and the caller, and returns when all
  // calls have. Calls of one Run may run concurrently; Runs from several threads queue.
  void Run(size_t n, const std::function<void(size_t)>& fn);

 private:
  struct Job {
    const std::function<void(size_t)>* fn = nullptr;
    size_t n = 0;
    size_t next = 0;      // the next index to hand out
    size_t finished = 0;  // calls returned
  };
  void Work();
  // Takes the next index of the current job; false when none is left.
  bool Take(Job** job, size_t* index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex run_mu_;  // one Run at a time
  absl::Mutex mu_;
  Job* job_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace tome::storage
