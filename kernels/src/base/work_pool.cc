#include "tome/base/work_pool.h"

#include <algorithm>

namespace tome {

WorkPool::WorkPool(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

WorkPool::~WorkPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void WorkPool::RunOne(Job* job, std::unique_lock<std::mutex>& lock) {
  const size_t index = job->next++;
  if (job->next == job->n) jobs_.erase(std::find(jobs_.begin(), jobs_.end(), job));
  lock.unlock();
  (*job->fn)(index);
  lock.lock();
  if (++job->finished == job->n) done_cv_.notify_all();
}

void WorkPool::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
    if (stop_) return;
    RunOne(jobs_.front(), lock);
  }
}

void WorkPool::Run(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (threads_.empty() || n == 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  Job job;
  job.fn = &fn;
  job.n = n;
  std::unique_lock<std::mutex> lock(mu_);
  jobs_.push_back(&job);
  work_cv_.notify_all();
  while (job.next < job.n) RunOne(&job, lock);  // the caller works on its own job
  // The job is off the queue; wait for the helpers' calls still running.
  done_cv_.wait(lock, [&job] { return job.finished == job.n; });
}

}  // namespace tome
