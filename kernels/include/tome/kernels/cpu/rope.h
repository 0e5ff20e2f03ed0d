#pragma once

#include <cstdint>

namespace tome::kernels::cpu {

// Rotary position embedding, "rotate half" pairing (element i with i + d/2), applied in place
// to x[T, H, d] (row stride `row_stride` elements between tokens) at positions
// first_position .. first_position + T - 1. Angles are float32(p) · theta^(-2i/d) in fp32,
// as the reference computes them.
void ApplyRope(float* x, int64_t num_tokens, int64_t num_heads, int64_t head_dim,
               int64_t row_stride, int64_t first_position, float theta);

}  // namespace tome::kernels::cpu
