#include "tome/kernels/cpu/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace tome::kernels::cpu {

int32_t ArgMax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

int32_t SampleToken(const float* logits, int64_t n, float temperature, float top_p,
                    double uniform, float* scratch) {
  if (temperature <= 0.0f) return ArgMax(logits, n);
  float* probs = scratch;
  // Indices are stored as floats in the second half of scratch: exact for n < 2^24.
  float* order = scratch + n;
  const float max_logit = logits[ArgMax(logits, n)];
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    probs[i] = std::exp((logits[i] - max_logit) / temperature);
    total += probs[i];
  }
  int64_t kept = n;
  if (top_p < 1.0f) {
    std::iota(order, order + n, 0.0f);
    std::sort(order, order + n, [&](float a, float b) {
      return probs[static_cast<int64_t>(a)] > probs[static_cast<int64_t>(b)];
    });
    double mass = 0.0;
    kept = 0;
    while (kept < n && mass < top_p * total) mass += probs[static_cast<int64_t>(order[kept++])];
    total = mass;
  } else {
    std::iota(order, order + n, 0.0f);
  }
  double target = uniform * total;
  for (int64_t i = 0; i < kept; ++i) {
    const int64_t idx = static_cast<int64_t>(order[i]);
    target -= probs[idx];
    if (target < 0.0) return static_cast<int32_t>(idx);
  }
  return static_cast<int32_t>(order[kept - 1]);
}

}  // namespace tome::kernels::cpu
