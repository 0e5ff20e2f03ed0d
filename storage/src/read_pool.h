// Threads that read many records in parallel: a cold follow-up question reads thousands of
// KV blocks, and a disk serves them faster with several requests in flight than one by one.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

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
  // Runs indices of the current job until none is left to hand out; `lock` holds mu_.
  void Drain(std::unique_lock<std::mutex>& lock);

  // std::mutex rather than absl::Mutex: ThreadSanitizer sees its ordering (Debian's abseil
  // is not instrumented).
  std::mutex run_mu_;  // one Run at a time
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  Job* job_ = nullptr;  // guarded by mu_
  bool stop_ = false;   // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace tome::storage
