#include "tome/kernels/cpu/sparse_attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "tome/kernels/cpu/elementwise.h"
#include "tome/kernels/cpu/gemm.h"
#include "vec_math.h"

namespace tome::kernels::cpu {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
// Stage-1 score tiles are bounded to this many floats (per group, all heads of the tile).
constexpr int64_t kScoreTileFloats = int64_t{8} << 20;

// scores[t, col0 + r] = q_t · rows[r] for all rows of `m` (paged), t < num_tokens.
void ScoreAgainstPaged(const float* q, int64_t num_tokens, int64_t q_stride, int64_t head_dim,
                       const PagedRows<float>& m, int64_t num_rows, float* scores,
                       int64_t ld_scores) {
  for (int64_t r0 = 0; r0 < num_rows; r0 += m.rows_per_page) {
    const int64_t n = std::min(m.rows_per_page, num_rows - r0);
    MatMulTransB(q, m.pages[r0 / m.rows_per_page], scores + r0, num_tokens, n, head_dim, 0.0f,
                 q_stride, m.width, ld_scores);
  }
}

// Ranks blocks 0..num_blocks-1 by (score desc, index asc), keeps `k`, writes them ascending.
void TopBlocks(const float* block_score, int64_t num_blocks, int64_t k, int32_t* out,
               float* out_scores, std::vector<int32_t>& order) {
  order.resize(num_blocks);
  std::iota(order.begin(), order.end(), 0);
  auto better = [&](int32_t a, int32_t b) {
    return block_score[a] > block_score[b] || (block_score[a] == block_score[b] && a < b);
  };
  if (k < num_blocks) {
    std::nth_element(order.begin(), order.begin() + k, order.end(), better);
    order.resize(k);
  }
  std::sort(order.begin(), order.end());
  for (int64_t i = 0; i < static_cast<int64_t>(order.size()); ++i) {
    out[i] = order[i];
    if (out_scores) out_scores[i] = block_score[order[i]];
  }
}

}  // namespace

void WindowMeans(const PagedRows<float>& keys, int64_t first_window, int64_t num_windows,
                 int64_t window, int64_t stride, float* out) {
  const int64_t width = keys.width;
  const float inv = 1.0f / static_cast<float>(window);
  for (int64_t w = 0; w < num_windows; ++w) {
    float* o = out + w * width;
    std::fill(o, o + width, 0.0f);
    const int64_t start = (first_window + w) * stride;
    for (int64_t r = start; r < start + window; ++r) Axpy(1.0f, keys.row(r), o, width);
    Scale(o, inv, width);
  }
}

void SelectBlocks(const float* q, int64_t num_tokens, int64_t num_q_heads, int64_t num_groups,
                  int64_t head_dim, int64_t q_stride, int64_t first_position,
                  const PagedRows<float>* k1, const PagedRows<float>* k2,
                  const SparseParams& params, float scale, int32_t* selected, float* scores) {
  const int64_t hg = num_q_heads / num_groups;
  const int64_t topk = params.topk_total;
  const int64_t B = params.block_size;
  const int64_t last = first_position + num_tokens - 1;
  const int64_t n1_max = params.NumK1(last + 1);
  const int64_t n2_max = params.NumK2(last + 1);
  const int64_t row_floats = std::max<int64_t>(1, hg * (n1_max + n2_max));
  const int64_t tile = std::clamp<int64_t>(kScoreTileFloats / row_floats, 1, num_tokens);
  // Scratch reused across calls (decode must not allocate per token).
  thread_local std::vector<float> s1_storage, s2_storage;
  if (s1_storage.size() < static_cast<size_t>(tile * hg * n1_max)) {
    s1_storage.resize(tile * hg * n1_max);
  }
  if (s2_storage.size() < static_cast<size_t>(tile * hg * n2_max)) {
    s2_storage.resize(tile * hg * n2_max);
  }
  // Plain pointers: inside the parallel region a thread_local name would be another thread's.
  float* const s1 = s1_storage.data();
  float* const s2 = s2_storage.data();

  for (int64_t g = 0; g < num_groups; ++g) {
    for (int64_t t0 = 0; t0 < num_tokens; t0 += tile) {
      const int64_t nt = std::min(tile, num_tokens - t0);
      // Scores against every summary visible to the tile's last query (BLAS, multi-threaded).
      for (int64_t hh = 0; hh < hg; ++hh) {
        const float* qh = q + t0 * q_stride + (g * hg + hh) * head_dim;
        ScoreAgainstPaged(qh, nt, q_stride, head_dim, k1[g], n1_max, s1 + hh * n1_max,
                          hg * n1_max);
        ScoreAgainstPaged(qh, nt, q_stride, head_dim, k2[g], n2_max, s2 + hh * n2_max,
                          hg * n2_max);
      }
#pragma omp parallel
      {
        thread_local std::vector<float> acc, block_score;
        thread_local std::vector<int32_t> order;
        if (acc.size() < static_cast<size_t>(n1_max)) acc.resize(n1_max);
#pragma omp for schedule(dynamic, 4)
        for (int64_t t = 0; t < nt; ++t) {
          const int64_t p = first_position + t0 + t;
          const int64_t bp = p / B;
          const int64_t nb = bp + 1;
          int32_t* out = selected + ((t0 + t) * num_groups + g) * topk;
          float* out_scores = scores ? scores + ((t0 + t) * num_groups + g) * topk : nullptr;
          std::fill(out, out + topk, -1);
          if (out_scores) std::fill(out_scores, out_scores + topk, 0.0f);
          const bool all = nb <= topk;
          if (all && !out_scores) {
            for (int64_t b = 0; b < nb; ++b) out[b] = static_cast<int32_t>(b);
            continue;
          }
          const int64_t n1v = params.NumK1(p + 1);
          const int64_t n2v = params.NumK2(p + 1);
          std::fill(acc.begin(), acc.begin() + n1v, 0.0f);
          for (int64_t hh = 0; hh < hg; ++hh) {
            const float* r1 = s1 + (t * hg + hh) * n1_max;
            const float* r2 = s2 + (t * hg + hh) * n2_max;
            if (n2v == 0) {  // no coarse normaliser yet: every visible window scores +inf
              std::fill(acc.begin(), acc.begin() + n1v, kInf);
              break;
            }
            float m = -kInf;
            for (int64_t j = 0; j < n2v; ++j) m = std::max(m, scale * r2[j]);
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < n2v; ++j) sum += FastExp(scale * r2[j] - m);
            const float lse = m + std::log(sum);
#pragma omp simd
            for (int64_t j = 0; j < n1v; ++j) acc[j] += FastExp(scale * r1[j] - lse);
          }
          // Max-pool the visible windows that overlap each block; force init + local blocks.
          block_score.resize(nb);
          for (int64_t b = 0; b < nb; ++b) {
            if (b < params.init_blocks || b >= bp - params.local_blocks) {
              block_score[b] = kInf;
              continue;
            }
            const int64_t num = B * b - params.kernel_size + 1;
            const int64_t lo = num <= 0 ? 0 : (num + params.kernel_stride - 1) / params.kernel_stride;
            const int64_t hi = std::min((B * b + B - 1) / params.kernel_stride, n1v - 1);
            float best = -kInf;
            for (int64_t j = lo; j <= hi; ++j) best = std::max(best, acc[j]);
            block_score[b] = best;
          }
          TopBlocks(block_score.data(), nb, topk, out, out_scores, order);
        }
      }
    }
  }
}

namespace {

// Shapes shared by the attention paths below.
struct AttentionArgs {
  const float* q;
  int64_t q_stride, first_position, hg, d, B, topk;
  const PagedRows<float>* keys;
  const PagedRows<float>* values;
  const int32_t* selected;  // null: every causal block
  int64_t num_groups;
  float scale;
  float* out;
  int64_t out_stride;

  const int32_t* list(int64_t t, int64_t g) const {
    return selected ? selected + (t * num_groups + g) * topk : nullptr;
  }
};

// Folds a block's scaled scores s[0..n) into one row's running max `m` and normaliser `l`,
// rescaling its accumulator; returns the new max. The caller adds exp(s - max) · v.
float OnlineSoftmaxStep(const float* s, int64_t n, float* m, float* l, float* acc, int64_t d) {
  float block_max = -kInf;
  for (int64_t j = 0; j < n; ++j) block_max = std::max(block_max, s[j]);
  const float m_new = std::max(*m, block_max);
  const float correction = FastExp(*m - m_new);
  if (correction != 1.0f) Scale(acc, correction, d);
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += FastExp(s[j] - m_new);
  *l = *l * correction + sum;
  *m = m_new;
  return m_new;
}

// One query and group: online softmax over its blocks (decode and tiny chunks).
void AttendOneQuery(const AttentionArgs& a, int64_t t, int64_t g) {
  thread_local std::vector<float> acc, m, l, s;
  acc.assign(a.hg * a.d, 0.0f);
  m.assign(a.hg, -kInf);
  l.assign(a.hg, 0.0f);
  s.resize(a.B);
  const int64_t p = a.first_position + t, bp = p / a.B, d = a.d;
  const int32_t* list = a.list(t, g);
  const int64_t count = list ? a.topk : bp + 1;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t b = list ? list[i] : i;
    if (b < 0 || b > bp) continue;
    const int64_t rows = std::min(a.B, p - a.B * b + 1);
    const float* kb = a.keys[g].pages[b];
    const float* vb = a.values[g].pages[b];
    for (int64_t hh = 0; hh < a.hg; ++hh) {
      const float* qh = a.q + t * a.q_stride + (g * a.hg + hh) * d;
      for (int64_t r = 0; r < rows; ++r) s[r] = a.scale * Dot(qh, kb + r * d, d);
      float* acc_h = acc.data() + hh * d;
      const float m_new = OnlineSoftmaxStep(s.data(), rows, &m[hh], &l[hh], acc_h, d);
      for (int64_t r = 0; r < rows; ++r) Axpy(FastExp(s[r] - m_new), vb + r * d, acc_h, d);
    }
  }
  for (int64_t hh = 0; hh < a.hg; ++hh) {
    float* o = a.out + t * a.out_stride + (g * a.hg + hh) * d;
    const float inv = 1.0f / l[hh];
    for (int64_t i = 0; i < d; ++i) o[i] = acc[hh * d + i] * inv;
  }
}

// Below this many selecting rows a block is scored without BLAS.
constexpr int64_t kDirectRows = 4;

// The queries t0 .. t0+nq-1 (all in one query block) of group g: each key block in the union
// of their selections is scored and applied with two small GEMMs per head, rows of queries
// that did not select the block masked out.
void AttendTile(const AttentionArgs& a, int64_t t0, int64_t nq, int64_t g) {
  const int64_t d = a.d, B = a.B;
  const int64_t p_first = a.first_position + t0, p_last = p_first + nq - 1;
  const int64_t bq = p_last / B;
  thread_local std::vector<uint8_t> in_union;
  thread_local std::vector<int32_t> cursor;
  thread_local std::vector<uint8_t> selects;
  thread_local std::vector<float> scores, acc, m, l, gathered;
  thread_local std::vector<int64_t> rows_of;
  in_union.assign(bq + 1, a.selected ? 0 : 1);
  if (a.selected) {
    for (int64_t t = 0; t < nq; ++t) {
      const int32_t* list = a.list(t0 + t, g);
      for (int64_t i = 0; i < a.topk; ++i) {
        if (list[i] >= 0 && list[i] <= bq) in_union[list[i]] = 1;
      }
    }
  }
  cursor.assign(nq, 0);
  selects.assign(nq, 1);
  scores.resize(nq * B);
  gathered.resize(nq * d);
  acc.assign(a.hg * nq * d, 0.0f);
  m.assign(a.hg * nq, -kInf);
  l.assign(a.hg * nq, 0.0f);
  for (int64_t b = 0; b <= bq; ++b) {
    if (!in_union[b]) continue;
    if (a.selected) {  // lists are ascending, -1 padded at the end
      for (int64_t t = 0; t < nq; ++t) {
        const int32_t* list = a.list(t0 + t, g);
        int32_t& c = cursor[t];
        while (c < a.topk && list[c] >= 0 && list[c] < b) ++c;
        selects[t] = c < a.topk && list[c] == b;
      }
    }
    // The rows of queries that selected block b, gathered so that both products are GEMMs
    // whose size follows the number of selecting queries.
    rows_of.clear();
    for (int64_t t = 0; t < nq; ++t) {
      if (selects[t]) rows_of.push_back(t);
    }
    const int64_t n = static_cast<int64_t>(rows_of.size());
    if (n == 0) continue;
    const int64_t rows = std::min(B, p_last - B * b + 1);
    const float* kb = a.keys[g].pages[b];
    const float* vb = a.values[g].pages[b];
    for (int64_t hh = 0; hh < a.hg; ++hh) {
      const int64_t head = g * a.hg + hh;
      float* acc_h = acc.data() + hh * nq * d;
      if (n <= kDirectRows) {
        // A BLAS call costs more than these few rows' products: do them directly.
        for (int64_t i = 0; i < n; ++i) {
          const int64_t t = rows_of[i];
          const float* qt = a.q + (t0 + t) * a.q_stride + head * d;
          float* st = scores.data() + i * B;
          const int64_t valid = std::min(rows, p_first + t - B * b + 1);
          for (int64_t j = 0; j < valid; ++j) st[j] = a.scale * Dot(qt, kb + j * d, d);
          float* acc_t = acc_h + t * d;
          const float m_new = OnlineSoftmaxStep(st, valid, &m[hh * nq + t], &l[hh * nq + t],
                                                acc_t, d);
          for (int64_t j = 0; j < valid; ++j) Axpy(FastExp(st[j] - m_new), vb + j * d, acc_t, d);
        }
        continue;
      }
      for (int64_t i = 0; i < n; ++i) {
        std::copy_n(a.q + (t0 + rows_of[i]) * a.q_stride + head * d, d, gathered.data() + i * d);
      }
      MatMulTransB(gathered.data(), kb, scores.data(), n, rows, d, 0.0f, d, d, B);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = rows_of[i];
        float* st = scores.data() + i * B;
        const int64_t valid = std::min(rows, p_first + t - B * b + 1);
        for (int64_t j = 0; j < valid; ++j) st[j] *= a.scale;
        const float m_new =
            OnlineSoftmaxStep(st, valid, &m[hh * nq + t], &l[hh * nq + t], acc_h + t * d, d);
#pragma omp simd
        for (int64_t j = 0; j < valid; ++j) st[j] = FastExp(st[j] - m_new);
        std::fill(st + valid, st + rows, 0.0f);
      }
      MatMul(scores.data(), vb, gathered.data(), n, d, rows, 0.0f, B, d, d);
      for (int64_t i = 0; i < n; ++i) {
        Axpy(1.0f, gathered.data() + i * d, acc_h + rows_of[i] * d, d);
      }
    }
  }
  for (int64_t hh = 0; hh < a.hg; ++hh) {
    for (int64_t t = 0; t < nq; ++t) {
      float* o = a.out + (t0 + t) * a.out_stride + (g * a.hg + hh) * d;
      const float* src = acc.data() + (hh * nq + t) * d;
      const float inv = 1.0f / l[hh * nq + t];
      for (int64_t i = 0; i < d; ++i) o[i] = src[i] * inv;
    }
  }
}

}  // namespace

void BlockSparseAttention(const float* q, int64_t num_tokens, int64_t num_q_heads,
                          int64_t num_groups, int64_t head_dim, int64_t q_stride,
                          int64_t first_position, const PagedRows<float>* keys,
                          const PagedRows<float>* values, int64_t block_size,
                          const int32_t* selected, int64_t topk_total, float scale, float* out,
                          int64_t out_stride) {
  const AttentionArgs args{q,        q_stride,   first_position, num_q_heads / num_groups,
                           head_dim, block_size, topk_total,     keys,
                           values,   selected,   num_groups,     scale,
                           out,      out_stride};
  constexpr int64_t kMinTile = 8;
  if (num_tokens < kMinTile) {
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (num_tokens * num_groups > 1)
    for (int64_t t = 0; t < num_tokens; ++t) {
      for (int64_t g = 0; g < num_groups; ++g) AttendOneQuery(args, t, g);
    }
    return;
  }
  // Tiles: runs of queries inside one query block.
  std::vector<std::pair<int64_t, int64_t>> tiles;
  for (int64_t t = 0; t < num_tokens;) {
    const int64_t block_end = ((first_position + t) / block_size + 1) * block_size;
    const int64_t n = std::min(num_tokens - t, block_end - (first_position + t));
    tiles.emplace_back(t, n);
    t += n;
  }
  const int64_t work = static_cast<int64_t>(tiles.size()) * num_groups;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t w = 0; w < work; ++w) {
    const auto [t0, nq] = tiles[w / num_groups];
    AttendTile(args, t0, nq, w % num_groups);
  }
}

}  // namespace tome::kernels::cpu
