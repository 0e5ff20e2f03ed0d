// Optional per-op timing of the CUDA backend (TOME_CUDA_OP_TIMES=1): each op is bracketed by
// events and waited for, so the totals show where time goes (at the cost of overlap). Ops are
// summed per phase (the backend names it at the start of each forward call: prefill chunks
// and decode steps apart); one table per phase is printed to stderr when the backend is
// destroyed.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <string>

namespace tome::engine {

class OpTimer {
 public:
  explicit OpTimer(cudaStream_t stream);
  ~OpTimer();
  bool enabled() const { return enabled_; }
  void Begin();
  void End(const char* op);
  // Ops from now on count towards `phase` (a string literal); each call counts one forward
  // call of that phase.
  void SetPhase(const char* phase);
  void Print() const;

 private:
  struct Total {
    double ms = 0;
    int64_t calls = 0;
  };
  cudaStream_t stream_;
  bool enabled_ = false;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  struct Phase {
    int64_t forward_calls = 0;
    std::map<std::string, Total> ops;
  };
  const char* phase_ = "(no forward call)";
  std::map<std::string, Phase> phases_;
};

// Times one op when the timer is enabled.
class ScopedOp {
 public:
  ScopedOp(OpTimer& timer, const char* op) : timer_(timer), op_(op) {
    if (timer_.enabled()) timer_.Begin();
  }
  ~ScopedOp() {
    if (timer_.enabled()) timer_.End(op_);
  }

 private:
  OpTimer& timer_;
  const char* op_;
};

}  // namespace tome::engine
