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
  Total& t = totals_[op];
  t.ms += ms;
  ++t.calls;
}

void OpTimer::Print() const {
  std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
  std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.ms > b.second.ms; });
  double all = 0;
  for (auto& [name, t] : rows) all += t.ms;
  std::fprintf(stderr, "\nCUDA backend op times (TOME_CUDA_OP_TIMES=1):\n");
  std::fprintf(stderr, "| op | calls | total ms | share |\n|---|---:|---:|---:|\n");
  for (auto& [name, t] : rows) {
    std::fprintf(stderr, "| %s | %lld | %.1f | %.1f%% |\n", name.c_str(),
                 static_cast<long long>(t.calls), t.ms, all > 0 ? 100.0 * t.ms / all : 0.0);
  }
}

}  // namespace tome::engine
