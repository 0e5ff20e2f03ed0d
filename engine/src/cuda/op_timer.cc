#include "cuda/op_timer.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace tome::engine {

OpTimer::OpTimer(cudaStream_t stream) : stream_(stream) {
  const char* env = std::getenv("TOME_CUDA_OP_TIMES");
  enabled_ = env != nullptr && env[0] == '1';
  if (enabled_) {
    cudaEventCreate(&start_);
    cudaEventCreate(&stop_);
  }
}

OpTimer::~OpTimer() {
  if (!enabled_) return;
  Print();
  cudaEventDestroy(start_);
  cudaEventDestroy(stop_);
}

void OpTimer::Begin() { cudaEventRecord(start_, stream_); }

void OpTimer::End(const char* op) {
  cudaEventRecord(stop_, stream_);
  cudaEventSynchronize(stop_);
  float ms = 0;
  cudaEventElapsedTime(&ms, start_, stop_);
  Total& t = phases_[phase_].ops[op];
  t.ms += ms;
  ++t.calls;
}

void OpTimer::SetPhase(const char* phase) {
  phase_ = phase;
  ++phases_[phase_].forward_calls;
}

void OpTimer::Print() const {
  for (const auto& [phase, p] : phases_) {
    std::vector<std::pair<std::string, Total>> rows(p.ops.begin(), p.ops.end());
    std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.ms > b.second.ms; });
    double all = 0;
    for (auto& [name, t] : rows) all += t.ms;
    const double calls = std::max<int64_t>(p.forward_calls, 1);
    std::fprintf(stderr,
                 "\nCUDA backend op times (TOME_CUDA_OP_TIMES=1), %s: %lld forward calls, "
                 "%.1f ms of ops\n",
                 phase.c_str(), static_cast<long long>(p.forward_calls), all);
    std::fprintf(stderr,
                 "| op | calls | total ms | ms per forward call | share |\n"
                 "|---|---:|---:|---:|---:|\n");
    for (auto& [name, t] : rows) {
      std::fprintf(stderr, "| %s | %lld | %.1f | %.3f | %.1f%% |\n", name.c_str(),
                   static_cast<long long>(t.calls), t.ms, t.ms / calls,
                   all > 0 ? 100.0 * t.ms / all : 0.0);
    }
  }
}

}  // namespace tome::engine
