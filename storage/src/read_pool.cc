#include "read_pool.h"

namespace tome::storage {

ReadPool::ReadPool(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

ReadPool::~ReadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void ReadPool::Drain(std::unique_lock<std::mutex>& lock) {
  while (job_ != nullptr && job_->next < job_->n) {
    Job* job = job_;
    const size_t index = job->next++;
    lock.unlock();
    (*job->fn)(index);
    lock.lock();
    if (++job->finished == job->n) done_cv_.notify_all();
  }
}

void ReadPool::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [this] { return stop_ || (job_ != nullptr && job_->next < job_->n); });
    if (stop_) return;
    Drain(lock);
  }
}

void ReadPool::Run(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (threads_.empty() || n == 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::lock_guard<std::mutex> run_lock(run_mu_);
  Job job;
  job.fn = &fn;
  job.n = n;
  std::unique_lock<std::mutex> lock(mu_);
  job_ = &job;
  work_cv_.notify_all();
  Drain(lock);  // the caller works too
  done_cv_.wait(lock, [&job] { return job.finished == job.n; });
  job_ = nullptr;
}

}  // namespace tome::storage
