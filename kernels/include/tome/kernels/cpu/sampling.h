#pragma once

#include <cstdint>

namespace tome::kernels::cpu {

// Index of the largest logit (lowest index on ties).
int32_t ArgMax(const float* logits, int64_t n);

// Samples from softmax(logits / temperature) restricted to the smallest set of tokens whose
// probability mass reaches top_p (top_p >= 1 keeps all). `uniform` is a draw from [0, 1).
// `scratch` holds at least 2n floats. temperature <= 0 means greedy (ArgMax).
int32_t SampleToken(const float* logits, int64_t n, float temperature, float top_p,
                    double uniform, float* scratch);

}  // namespace tome::kernels::cpu
