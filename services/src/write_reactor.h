// A server-streaming reactor that a worker thread feeds: Write() queues a message (blocking
// while too many are queued, so a client that does not read cannot make the server buffer
// without bound) and Finish() ends the call once the queue drains. The reactor deletes
// itself when gRPC is done with it, which happens only after Finish().
#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

namespace tome::services {

template <typename Message>
class QueuedWriteReactor : public grpc::ServerWriteReactor<Message> {
 public:
  explicit QueuedWriteReactor(size_t max_queued = 64) : max_queued_(max_queued) {}

  // Queues `message`. Returns false (dropping it) once the call is cancelled.
  bool Write(Message message) {
    std::unique_lock<std::mutex> lock(mu_);
    space_cv_.wait(lock, [&] { return cancelled_ || queue_.size() < max_queued_; });
    if (cancelled_) return false;
    queue_.push_back(std::move(message));
    if (!writing_) StartNextLocked();
    return true;
  }

  // Ends the call after the queued messages are written. Call exactly once, last: the
  // reactor may be deleted before this returns.
  void Finish(grpc::Status status) {
    std::unique_lock<std::mutex> lock(mu_);
    finish_ = std::move(status);
    if (!writing_) FinishUnlocking(lock);
  }

  bool cancelled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock(mu_);
    writing_ = false;
    queue_.pop_front();
    if (!ok) cancelled_ = true;
    space_cv_.notify_all();
    if (!queue_.empty() && !cancelled_) {
      StartNextLocked();
    } else if (finish_) {
      FinishUnlocking(lock);
    }
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    space_cv_.notify_all();
  }

  void OnDone() override { delete this; }

 private:
  void StartNextLocked() {
    writing_ = true;
    this->StartWrite(&queue_.front());
  }
  // Ends the call (once). gRPC may run OnDone, which deletes this reactor, on another thread
  // as soon as Finish is called, so the lock is released first and no member is touched
  // after it.
  void FinishUnlocking(std::unique_lock<std::mutex>& lock) {
    if (finished_) return;
    finished_ = true;
    const grpc::Status status =
        cancelled_ && finish_->ok() ? grpc::Status::CANCELLED : *finish_;
    lock.unlock();
    this->grpc::ServerWriteReactor<Message>::Finish(status);
  }

  const size_t max_queued_;
  mutable std::mutex mu_;
  std::condition_variable space_cv_;
  std::deque<Message> queue_;
  bool writing_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
  std::optional<grpc::Status> finish_;
};

}  // namespace tome::services
