#include "read_pool.h"

namespace tome::storage {

ReadPool::ReadPool(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

ReadPool::~ReadPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

bool ReadPool::Take(Job** job, size_t* index) {
  if (job_ == nullptr || job_->next >= job_->n) return false;
  *job = job_;
  *index = job_->next++;
  return true;
}

void ReadPool::Work() {
  absl::MutexLock lock(&mu_);
  while (true) {
    mu_.Await(absl::Condition(
        +[](ReadPool* p) {
          return p->stop_ || (p->job_ != nullptr && p->job_->next < p->job_->n);
        },
        this));
    if (stop_) return;
    Job* job = nullptr;
    size_t index = 0;
    while (Take(&job, &index)) {
      mu_.Unlock();
      (*job->fn)(index);
      mu_.Lock();
      ++job->finished;
    }
  }
}

void ReadPool::Run(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (threads_.empty() || n == 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  absl::MutexLock run_lock(&run_mu_);
  Job job;
  job.fn = &fn;
  job.n = n;
  absl::MutexLock lock(&mu_);
  job_ = &job;
  Job* taken = nullptr;
  size_t index = 0;
  while (Take(&taken, &index)) {  // the caller works too
    mu_.Unlock();
    fn(index);
    mu_.Lock();
    ++job.finished;
  }
  mu_.Await(absl::Condition(
      +[](Job* j) { return j->finished == j->n; }, &job));
  job_ = nullptr;
}

}  // namespace tome::storage
