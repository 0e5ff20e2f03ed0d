// Helper threads that run the calls of a parallel loop with the caller: the context store's
// parallel record reads (a disk serves a cold question's thousands of KV blocks faster with
// several requests in flight) and the block cache's parallel store batches.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tome {

class WorkPool {
 public:
  // `threads` helpers besides the caller; 0 runs everything on the caller.
  explicit WorkPool(int threads);
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Calls fn(i) for every i in [0, n), on the helpers and the caller, and returns when all
  // calls have. Calls of one Run may run concurrently. Runs from several threads at once
  // share the helpers (the oldest job first) while each caller works on its own job, so a
  // Run never waits for another's calls.
  void Run(size_t n, const std::function<void(size_t)>& fn);

 private:
  struct Job {
    const std::function<void(size_t)>* fn = nullptr;
    size_t n = 0;
    size_t next = 0;      // the next index to hand out
    size_t finished = 0;  // calls returned
  };
  void Work();
  // Runs index job->next of `job`, unlocking around the call; `lock` holds mu_. A job whose
  // last index is handed out leaves the queue.
  void RunOne(Job* job, std::unique_lock<std::mutex>& lock);

  // std::mutex rather than absl::Mutex: ThreadSanitizer sees its ordering (Debian's abseil
  // is not instrumented).
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<Job*> jobs_;  // guarded by mu_: jobs with indices left to hand out
  bool stop_ = false;      // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace tome
