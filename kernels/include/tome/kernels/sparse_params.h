// InfLLM-v2 parameters shared by the CPU and CUDA kernels (docs/MODEL-SEMANTICS.md).
#pragma once

#include <algorithm>
#include <cstdint>

namespace tome::kernels {

struct SparseParams {
  int64_t block_size = 64;     // B: tokens per KV block
  int64_t kernel_size = 32;    // k1: level-1 summary window
  int64_t kernel_stride = 16;  // s1: level-1 summary stride
  int64_t init_blocks = 1;     // always-selected blocks at the start
  int64_t local_blocks = 32;   // window_size / block_size: forced blocks before b_p
  int64_t topk_total = 96;     // topk + local_blocks: blocks selected per query and group

  int64_t kernel_size2() const { return 4 * kernel_size; }
  int64_t kernel_stride2() const { return 4 * kernel_stride; }

  // Complete summary windows among the first `n` tokens (window w, stride s).
  static int64_t NumWindows(int64_t n, int64_t w, int64_t s) {
    return n < w ? 0 : (n - w) / s + 1;
  }
  int64_t NumK1(int64_t num_tokens) const {
    return NumWindows(num_tokens, kernel_size, kernel_stride);
  }
  int64_t NumK2(int64_t num_tokens) const {
    return NumWindows(num_tokens, kernel_size2(), kernel_stride2());
  }
  // True when every causal block of the query at `position` is selected, so the sparse
  // path equals dense causal attention.
  bool SelectsAll(int64_t position) const { return position / block_size + 1 <= topk_total; }
};

}  // namespace tome::kernels
