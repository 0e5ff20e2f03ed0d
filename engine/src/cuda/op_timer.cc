#include "cuda/op_timer.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tome/kernels/cuda/spin.h"

namespace tome::engine {

OpTimer::OpTimer(cudaStream_t stream) : stream_(stream) {
  const char* env = std::getenv("TOME_CUDA_OP_TIMES");
  if (env == nullptr) return;
  if (std::strcmp(env, "1") == 0) {
    mode_ = Mode::kSynchronised;
    cudaEventCreate(&start_);
    cudaEventCreate(&stop_);
  } else if (std::strcmp(env, "timeline") == 0) {
    mode_ = Mode::kTimeline;
  } else if (std::strcmp(env, "lead") == 0) {
    mode_ = Mode::kLead;
  }
}

OpTimer::~OpTimer() {
  if (!enabled()) return;
  Print();
  if (start_) cudaEventDestroy(start_);
  if (stop_) cudaEventDestroy(stop_);
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
}

cudaEvent_t OpTimer::EventAt(size_t i) {
  while (events_.size() <= i) {
    cudaEvent_t e = nullptr;
    cudaEventCreate(&e);
    events_.push_back(e);
  }
  return events_[i];
}

void OpTimer::Begin() {
  if (mode_ == Mode::kLead) return;
  host_start_ = std::chrono::steady_clock::now();
  cudaEventRecord(mode_ == Mode::kTimeline ? EventAt(2 * pending_.size()) : start_, stream_);
}

void OpTimer::End(const char* op) {
  if (mode_ == Mode::kLead) {
    ++phases_[phase_].issued_ops;
    return;
  }
  if (mode_ == Mode::kTimeline) {
    cudaEventRecord(EventAt(2 * pending_.size() + 1), stream_);
    const std::chrono::duration<double, std::milli> host =
        std::chrono::steady_clock::now() - host_start_;
    pending_.push_back({op, host.count()});
    return;
  }
  cudaEventRecord(stop_, stream_);
  cudaEventSynchronize(stop_);
  float ms = 0;
  cudaEventElapsedTime(&ms, start_, stop_);
  Total& t = phases_[phase_].ops[op];
  t.ms += ms;
  ++t.calls;
}

void OpTimer::Flush() {
  if (pending_.empty()) return;
  cudaEventSynchronize(events_[2 * pending_.size() - 1]);
  Phase& phase = phases_[phase_];
  auto elapsed = [&](size_t from, size_t to) {
    float ms = 0;
    cudaEventElapsedTime(&ms, events_[from], events_[to]);
    return static_cast<double>(ms);
  };
  for (size_t i = 0; i < pending_.size(); ++i) {
    Total& t = phase.ops[pending_[i].op];
    t.ms += elapsed(2 * i, 2 * i + 1);
    t.host_ms += pending_[i].host_ms;
    ++t.calls;
    if (i > 0) phase.idle_ms += elapsed(2 * i - 1, 2 * i);
  }
  phase.span_ms += elapsed(0, 2 * pending_.size() - 1);
  pending_.clear();
}

void OpTimer::SetPhase(const char* phase) {
  Flush();
  phase_ = phase;
  ++phases_[phase_].forward_calls;
  // The GPU waits while the host issues this call's first ops (see kernels/cuda/spin.h).
  if (mode_ == Mode::kTimeline || mode_ == Mode::kLead) {
    kernels::cuda::Spin(kLeadMicroseconds, stream_);
  }
}

void OpTimer::Print() {
  Flush();
  const bool timeline = mode_ == Mode::kTimeline;
  if (mode_ == Mode::kLead) {
    for (const auto& [phase, p] : phases_) {
      const double calls = std::max<int64_t>(p.forward_calls, 1);
      std::fprintf(stderr,
                   "\nCUDA backend (TOME_CUDA_OP_TIMES=lead, the GPU held %d us ahead of each "
                   "forward call), %s: %lld forward calls, %.1f ops a call; compare the wall "
                   "time with a run without the timer\n",
                   kLeadMicroseconds, phase.c_str(), static_cast<long long>(p.forward_calls),
                   p.issued_ops / calls);
    }
    return;
  }
  for (const auto& [phase, p] : phases_) {
    std::vector<std::pair<std::string, Total>> rows(p.ops.begin(), p.ops.end());
    std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.ms > b.second.ms; });
    double all = 0, host = 0;
    for (auto& [name, t] : rows) all += t.ms, host += t.host_ms;
    const double calls = std::max<int64_t>(p.forward_calls, 1);
    std::fprintf(stderr,
                 "\nCUDA backend op times (TOME_CUDA_OP_TIMES=%s), %s: %lld forward calls, "
                 "%.1f ms of ops\n",
                 timeline ? "timeline" : "1", phase.c_str(),
                 static_cast<long long>(p.forward_calls), all);
    if (timeline) {
      std::fprintf(stderr,
                   "per forward call (each call's ops issued while the GPU waits %d us first): "
                   "first op's start to last op's end %.3f ms, GPU in ops "
                   "%.3f ms, GPU idle between ops %.3f ms, host issuing ops %.3f ms\n",
                   kLeadMicroseconds, p.span_ms / calls, all / calls, p.idle_ms / calls,
                   host / calls);
    }
    std::fprintf(stderr,
                 "| op | calls | total ms | ms per forward call | share | host ms per call |\n"
                 "|---|---:|---:|---:|---:|---:|\n");
    for (auto& [name, t] : rows) {
      std::fprintf(stderr, "| %s | %lld | %.1f | %.3f | %.1f%% | %s |\n", name.c_str(),
                   static_cast<long long>(t.calls), t.ms, t.ms / calls,
                   all > 0 ? 100.0 * t.ms / all : 0.0,
                   timeline ? std::to_string(t.host_ms / calls).c_str() : "-");
    }
  }
}

}  // namespace tome::engine
