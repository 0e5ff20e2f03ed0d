// InfLLM-v2 block-sparse attention on the CPU: block summaries, stage-1 block selection and
// block-sparse (or dense) causal attention. Exact semantics: docs/MODEL-SEMANTICS.md.
#pragma once

#include <cstdint>

#include "tome/kernels/paged_rows.h"
#include "tome/kernels/sparse_params.h"

namespace tome::kernels::cpu {

// out[w, :] = mean of rows [w·stride, w·stride + window) of `keys`, for windows
// first_window .. first_window + num_windows - 1 (all must be complete).
void WindowMeans(const PagedRows<float>& keys, int64_t first_window, int64_t num_windows,
                 int64_t window, int64_t stride, float* out);

// Stage 1 + top-k for queries at positions first_position .. first_position + T - 1.
//   q:         [T, Hq, d] with `q_stride` elements between tokens; query head h belongs to
//              KV group h / (Hq / G).
//   k1, k2:    per KV group g, the level-1 / level-2 summaries (at least those visible to the
//              last query).
//   selected:  [T, G, topk_total] block indices sorted ascending, padded with -1.
//   scores:    optional [T, G, topk_total] pooled scores of the selected blocks (+inf for
//              forced blocks), for citations; may be null.
void SelectBlocks(const float* q, int64_t num_tokens, int64_t num_q_heads, int64_t num_groups,
                  int64_t head_dim, int64_t q_stride, int64_t first_position,
                  const PagedRows<float>* k1, const PagedRows<float>* k2,
                  const SparseParams& params, float scale, int32_t* selected, float* scores);

// Causal attention of queries at first_position .. over the tokens of the selected blocks
// (token-level mask in the diagonal block). With `selected` null every causal block is used
// (dense causal attention).
//   keys, values: per KV group g, rows are tokens (pages of block_size rows).
//   out:          [T, Hq, d] with `out_stride` elements between tokens.
void BlockSparseAttention(const float* q, int64_t num_tokens, int64_t num_q_heads,
                          int64_t num_groups, int64_t head_dim, int64_t q_stride,
                          int64_t first_position, const PagedRows<float>* keys,
                          const PagedRows<float>* values, int64_t block_size,
                          const int32_t* selected, int64_t topk_total, float scale, float* out,
                          int64_t out_stride);

}  // namespace tome::kernels::cpu
