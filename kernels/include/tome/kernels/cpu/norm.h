#pragma once

#include <cstdint>

namespace tome::kernels::cpu {

// RMSNorm of every `n`-element group: each of `rows` rows (`row_stride` elements apart)
// holds `groups` consecutive groups of n elements, and each group g becomes
// g / sqrt(mean(g²) + eps) ⊙ w. In place. groups = 1 gives the layer norms; groups = H,
// n = d gives the per-head QK-norm of Lightning layers.
void RmsNorm(float* x, const float* w, int64_t rows, int64_t groups, int64_t n,
             int64_t row_stride, float eps);

}  // namespace tome::kernels::cpu
