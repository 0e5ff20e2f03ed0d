// Optional per-op timing of the CUDA backend, chosen by TOME_CUDA_OP_TIMES:
//  * `1` (synchronised): each op is bracketed by events and waited for, so the totals show
//    where time goes (at the cost of overlap);
//  * `timeline`: the events are recorded without waiting and read at the next forward call,
//    and each forward call's ops are queued behind a kernel that holds the GPU for
//    kLeadMicroseconds, so that the host is ahead and the ops' event times are the GPU's own
//    (the forward call's wall time minus their span is what issuing them costs when the GPU
//    does not wait); each op's GPU time, the GPU's idle time between consecutive ops and the
//    host time spent issuing each op are summed;
//  * `lead`: only the lead kernel ahead of each forward call, no events: a call's wall time
//    is then the lead plus the GPU's own time for its ops, unless issuing them takes the host
//    longer (compare it with the wall time of a run without the timer); ops are counted.
// Ops are summed per phase (the backend names it at the start of each forward call: prefill
// chunks and decode steps apart); one table per phase is printed to stderr when the backend
// is destroyed.
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace tome::engine {

class OpTimer {
 public:
  explicit OpTimer(cudaStream_t stream);
  ~OpTimer();
  bool enabled() const { return mode_ != Mode::kOff; }
  void Begin();
  void End(const char* op);
  // Ops from now on count towards `phase` (a string literal); each call counts one forward
  // call of that phase.
  void SetPhase(const char* phase);
  void Print();

 private:
  enum class Mode { kOff, kSynchronised, kTimeline, kLead };
  static constexpr int kLeadMicroseconds = 5000;
  struct Total {
    double ms = 0, host_ms = 0;
    int64_t calls = 0;
  };
  struct Phase {
    int64_t forward_calls = 0;
    double span_ms = 0, idle_ms = 0;  // timeline: first op's start to last op's end; gaps
    int64_t issued_ops = 0;           // lead
    std::map<std::string, Total> ops;
  };
  struct Pending {  // timeline: an op whose events are not read yet
    const char* op;
    double host_ms;
  };
  cudaEvent_t EventAt(size_t i);
  void Flush();  // timeline: reads the pending ops' events into the phase's totals

  cudaStream_t stream_;
  Mode mode_ = Mode::kOff;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  std::chrono::steady_clock::time_point host_start_;
  std::vector<cudaEvent_t> events_;  // timeline: two per pending op, reused
  std::vector<Pending> pending_;
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
