// One thread per tensor-parallel rank. Run(fn) calls fn(rank) on every rank's thread at
// once (their collectives need all ranks inside them together) and waits for all of them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace tome::engine {

class RankPool {
 public:
  // `thread_init(rank)` runs first on each rank's thread (e.g. to select its GPU).
  RankPool(int ranks, std::function<void(int rank)> thread_init = nullptr);
  ~RankPool();
  RankPool(const RankPool&) = delete;
  RankPool& operator=(const RankPool&) = delete;

  int size() const { return static_cast<int>(threads_.size()); }
  // Runs fn(0) .. fn(size - 1) concurrently, one per rank thread; returns the error of the
  // lowest failing rank. Calls from several threads take turns.
  absl::Status Run(const std::function<absl::Status(int rank)>& fn);
  // Called (once per Run, on the failing rank's thread) when a rank's fn fails while other
  // ranks are still running after `grace` more: they may be waiting in a collective for the
  // rank that failed, and `on_error` must release them (abort the group's collectives).
  void SetErrorHandler(std::function<void(int rank)> on_error,
                       std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

 private:
  void Loop(int rank, const std::function<void(int)>& thread_init);

  std::mutex run_mu_;  // one Run at a time
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  const std::function<absl::Status(int)>* task_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  bool error_handled_ = false;  // this Run's
  std::function<void(int)> on_error_;
  std::chrono::milliseconds grace_{2000};
  std::vector<absl::Status> results_;
  std::vector<std::thread> threads_;
};

}  // namespace tome::engine
