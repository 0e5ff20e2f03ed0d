#include "rank_pool.h"

namespace tome::engine {

RankPool::RankPool(int ranks, std::function<void(int rank)> thread_init) : results_(ranks) {
  for (int r = 0; r < ranks; ++r) {
    threads_.emplace_back([this, r, thread_init] { Loop(r, thread_init); });
  }
}

RankPool::~RankPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

absl::Status RankPool::Run(const std::function<absl::Status(int rank)>& fn) {
  std::lock_guard<std::mutex> run_lock(run_mu_);
  std::unique_lock<std::mutex> lock(mu_);
  task_ = &fn;
  pending_ = size();
  error_handled_ = false;
  ++generation_;
  work_cv_.notify_all();
  done_cv_.wait(lock, [&] { return pending_ == 0; });
  task_ = nullptr;
  absl::Status first;
  for (absl::Status& s : results_) {
    if (first.ok() && !s.ok()) first = s;
    s = absl::OkStatus();
  }
  return first;
}

void RankPool::SetErrorHandler(std::function<void(int rank)> on_error,
                               std::chrono::milliseconds grace) {
  std::lock_guard<std::mutex> lock(mu_);
  on_error_ = std::move(on_error);
  grace_ = grace;
}

void RankPool::Loop(int rank, const std::function<void(int)>& thread_init) {
  if (thread_init) thread_init(rank);
  uint64_t seen = 0;
  while (true) {
    const std::function<absl::Status(int)>* task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      task = task_;
    }
    absl::Status s = (*task)(rank);
    std::unique_lock<std::mutex> lock(mu_);
    if (!s.ok() && on_error_ && !error_handled_) {
      // The others may be blocked in a collective this rank will never join: give them
      // `grace_` to finish on their own, then have them released.
      error_handled_ = true;
      if (!done_cv_.wait_for(lock, grace_, [&] { return pending_ == 1; })) {
        lock.unlock();
        on_error_(rank);
        lock.lock();
      }
    }
    results_[rank] = std::move(s);
    if (--pending_ <= 1) done_cv_.notify_all();  // 1: a failed rank may be waiting (above)
  }
}

}  // namespace tome::engine
