#include "tome/kernels/cpu/sparse_attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "tome/kernels/cpu/elementwise.h"
#include "tome/kernels/cpu/gemm.h"
#include "top_k.h"
#include "vec_math.h"

namespace tome::kernels::cpu {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
// Stage 1 works on tiles of up to this many queries of one group, all heads of the group
// stacked into one GEMM operand ...
constexpr int64_t kSelectTile = 64;
// ... fewer when the tile's scratch would exceed this many floats (very long contexts).
constexpr int64_t kSelectScratchFloats = int64_t{4} << 20;
// Blocks tested together against the top-k threshold before pooling them one by one.
constexpr int64_t kPoolRun = 8;

// scores[r, c] = a[r] · m[c0 + c] for rows r < num_rows and columns c < n (paged m).
void ScorePagedColumns(const float* a, int64_t num_rows, int64_t head_dim,
                       const PagedRows<float>& m, int64_t c0, int64_t n, float* scores,
                       int64_t ld_scores) {
  for (int64_t c = c0; c < c0 + n;) {
    const int64_t in_page = c % m.rows_per_page;
    const int64_t cols = std::min(m.rows_per_page - in_page, c0 + n - c);
    MatMulTransB(a, m.pages[c / m.rows_per_page] + in_page * m.width, scores + (c - c0),
                 num_rows, cols, head_dim, 0.0f, head_dim, m.width, ld_scores);
    c += cols;
  }
}

struct SelectArgs {
  const float* q;
  int64_t q_stride, first_position, num_groups, hg, d;
  const PagedRows<float>* k1;
  const PagedRows<float>* k2;
  const SparseParams* params;
  float scale;
  int32_t* selected;
  float* scores;
};

// Stage 1 + top-k for queries t0 .. t0+nt-1 of group g. Per query and head, the level-2
// scores give the normaliser; exp(s·q·K1 - lse) is summed over the heads into acc, a row
// per query; blocks are max-pooled from acc and ranked.
void SelectTile(const SelectArgs& a, int64_t t0, int64_t nt, int64_t g) {
  const SparseParams& sp = *a.params;
  const int64_t hg = a.hg, d = a.d, topk = sp.topk_total, B = sp.block_size;
  const int64_t p_last = a.first_position + t0 + nt - 1;
  const int64_t n1_hi = sp.NumK1(p_last + 1), n2_hi = sp.NumK2(p_last + 1);
  const int64_t m = hg * nt;  // stacked rows: head hh, query t at row hh * nt + t
  thread_local std::vector<float> qs, s2, page, acc, lse;
  thread_local std::vector<int32_t> order;
  qs.resize(m * d);
  s2.resize(m * n2_hi);
  acc.resize(nt * n1_hi);
  lse.resize(m);
  for (int64_t hh = 0; hh < hg; ++hh) {
    for (int64_t t = 0; t < nt; ++t) {
      std::copy_n(a.q + (t0 + t) * a.q_stride + (g * hg + hh) * d, d,
                  qs.data() + (hh * nt + t) * d);
    }
  }
  // Normalisers: LSE over each query's visible level-2 summaries (+inf: none visible).
  ScorePagedColumns(qs.data(), m, d, a.k2[g], 0, n2_hi, s2.data(), n2_hi);
  for (int64_t r = 0; r < m; ++r) {
    const int64_t n2v = sp.NumK2(a.first_position + t0 + r % nt + 1);
    const float* row = s2.data() + r * n2_hi;
    if (n2v == 0) {
      lse[r] = kInf;
      continue;
    }
    // scale (1/√d) > 0 and rounding is monotone, so max(scale·x) = scale·max(x) exactly.
    const float mx = a.scale * MaxOf(row, n2v);
    lse[r] = mx + std::log(SumExp(row, n2v, a.scale, mx));
  }
  // acc[t, j] = Σ_h exp(s·q_h·K1[j] - lse_h), page by page of K1 so scores stay in cache.
  std::fill(acc.begin(), acc.end(), 0.0f);
  const int64_t cols = std::min<int64_t>(n1_hi, 256);
  page.resize(m * cols);
  for (int64_t c0 = 0; c0 < n1_hi; c0 += cols) {
    const int64_t n = std::min(cols, n1_hi - c0);
    ScorePagedColumns(qs.data(), m, d, a.k1[g], c0, n, page.data(), cols);
    for (int64_t hh = 0; hh < hg; ++hh) {
      for (int64_t t = 0; t < nt; ++t) {
        const int64_t visible = std::min(sp.NumK1(a.first_position + t0 + t + 1) - c0, n);
        if (visible <= 0) continue;
        float* acc_t = acc.data() + t * n1_hi + c0;
        const float l = lse[hh * nt + t];
        if (l == kInf) {  // no coarse normaliser yet: every visible window scores +inf
          std::fill(acc_t, acc_t + visible, kInf);
        } else {
          AddExp(page.data() + (hh * nt + t) * cols, visible, a.scale, l, acc_t);
        }
      }
    }
  }
  // Max-pool the visible windows that overlap each block; force init + local blocks.
  const int64_t nb_hi = p_last / B + 1;
  thread_local std::vector<int64_t> pool_lo, pool_hi;
  pool_lo.resize(nb_hi);
  pool_hi.resize(nb_hi);
  for (int64_t b = 0; b < nb_hi; ++b) {
    const int64_t num = B * b - sp.kernel_size + 1;
    pool_lo[b] = num <= 0 ? 0 : (num + sp.kernel_stride - 1) / sp.kernel_stride;
    pool_hi[b] = (B * b + B - 1) / sp.kernel_stride;
  }
  thread_local std::vector<int32_t> best_index;
  thread_local std::vector<float> best_score;
  best_index.resize(topk);
  best_score.resize(topk);
  TopK top;
  for (int64_t t = 0; t < nt; ++t) {
    const int64_t p = a.first_position + t0 + t;
    const int64_t bp = p / B, nb = bp + 1;
    int32_t* out = a.selected + ((t0 + t) * a.num_groups + g) * topk;
    float* out_scores = a.scores ? a.scores + ((t0 + t) * a.num_groups + g) * topk : nullptr;
    std::fill(out, out + topk, -1);
    if (out_scores) std::fill(out_scores, out_scores + topk, 0.0f);
    if (nb <= topk && !out_scores) {
      for (int64_t b = 0; b < nb; ++b) out[b] = static_cast<int32_t>(b);
      continue;
    }
    const int64_t n1v = sp.NumK1(p + 1);
    const float* acc_t = acc.data() + t * n1_hi;
    top.Reset(topk, best_index.data(), best_score.data());
    auto pooled = [&](int64_t b) {
      float score = -kInf;
      const int64_t hi = std::min(pool_hi[b], n1v - 1);
      for (int64_t j = pool_lo[b]; j <= hi; ++j) score = std::max(score, acc_t[j]);
      return score;
    };
    // Blocks in index order: forced ones score +inf; the others are max-pooled, a run of
    // them skipped at once when no window it covers beats the current k-th score.
    const int64_t mid_begin = std::min(sp.init_blocks, nb);
    const int64_t mid_end = std::max(mid_begin, std::min(bp - sp.local_blocks, nb));
    for (int64_t b = 0; b < mid_begin; ++b) top.Offer(static_cast<int32_t>(b), kInf);
    for (int64_t b0 = mid_begin; b0 < mid_end; b0 += kPoolRun) {
      const int64_t b1 = std::min(b0 + kPoolRun, mid_end);
      if (top.full()) {
        const int64_t lo = pool_lo[b0], hi = std::min(pool_hi[b1 - 1], n1v - 1);
        if (hi < lo || !(MaxOf(acc_t + lo, hi - lo + 1) > top.threshold())) continue;
      }
      for (int64_t b = b0; b < b1; ++b) top.Offer(static_cast<int32_t>(b), pooled(b));
    }
    for (int64_t b = mid_end; b < nb; ++b) top.Offer(static_cast<int32_t>(b), kInf);
    // Ascending block order for the output.
    const int64_t count = top.size();
    order.resize(count);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](int32_t x, int32_t y) { return best_index[x] < best_index[y]; });
    for (int64_t i = 0; i < count; ++i) {
      out[i] = best_index[order[i]];
      if (out_scores) out_scores[i] = best_score[order[i]];
    }
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
  const SelectArgs args{q,  q_stride, first_position, num_groups, hg,     head_dim,
                        k1, k2,       &params,        scale,      selected, scores};
  // Scratch per query: its heads' level-2 scores and its acc row.
  const int64_t last = first_position + num_tokens;
  const int64_t per_query = hg * params.NumK2(last) + params.NumK1(last);
  const int64_t tile =
      std::clamp<int64_t>(kSelectScratchFloats / std::max<int64_t>(per_query, 1), 1, kSelectTile);
  const int64_t tiles = (num_tokens + tile - 1) / tile;
  // One work item per (tile, group); BLAS calls inside the region run single-threaded.
#pragma omp parallel for schedule(dynamic, 1) if (tiles * num_groups > 1)
  for (int64_t w = 0; w < tiles * num_groups; ++w) {
    const int64_t t0 = (w / num_groups) * tile;
    SelectTile(args, t0, std::min(tile, num_tokens - t0), w % num_groups);
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
// rescaling its accumulator, and turns s into the weights exp(s - new max) that the caller
// applies to the values.
void OnlineSoftmaxStep(float* s, int64_t n, float* m, float* l, float* acc, int64_t d) {
  const float m_new = std::max(*m, MaxOf(s, n));
  const float correction = FastExp(*m - m_new);
  if (correction != 1.0f) Scale(acc, correction, d);
  *l = *l * correction + ExpInPlace(s, n, m_new);
  *m = m_new;
}

// s[j] = q · k_j for the rows of a key block; kChunks = d / 16. Sixteen keys at a time, their
// lane-wise products summed across lanes together.
template <int kChunks>
void BlockScores(const float* q, const float* kb, int64_t rows, float* s) {
  constexpr int64_t d = kChunks * kLanes;
  F16 qv[kChunks];
  for (int c = 0; c < kChunks; ++c) qv[c] = Load16(q + c * kLanes);
  int64_t j = 0;
  for (; j + kLanes <= rows; j += kLanes) {
    F16 p[kLanes];
    for (int64_t r = 0; r < kLanes; ++r) {
      const float* k = kb + (j + r) * d;
      F16 acc = qv[0] * Load16(k);
      for (int c = 1; c < kChunks; ++c) acc += qv[c] * Load16(k + c * kLanes);
      p[r] = acc;
    }
    Store16(s + j, TransposeSum16(p));
  }
  for (; j < rows; ++j) s[j] = Dot(q, kb + j * d, d);
}

// acc += Σ_j w[j] · v_j over the rows of a value block, acc held in registers.
template <int kChunks>
void AddWeightedRows(const float* w, const float* vb, int64_t rows, float* acc) {
  constexpr int64_t d = kChunks * kLanes;
  F16 a[kChunks];
  for (int c = 0; c < kChunks; ++c) a[c] = Load16(acc + c * kLanes);
  for (int64_t j = 0; j < rows; ++j) {
    for (int c = 0; c < kChunks; ++c) a[c] += w[j] * Load16(vb + j * d + c * kLanes);
  }
  for (int c = 0; c < kChunks; ++c) Store16(acc + c * kLanes, a[c]);
}

// One query's heads of a group (q: hg rows of d, adjacent) over the first `valid` keys of a
// block, folded into their running softmax state; s is scratch for B floats.
void AttendBlockDirect(const AttentionArgs& a, const float* q, const float* kb, const float* vb,
                       int64_t valid, float* m, float* l, float* acc, float* s) {
  const int64_t d = a.d;
  for (int64_t hh = 0; hh < a.hg; ++hh) {
    const float* qh = q + hh * d;
    float* acc_h = acc + hh * d;
    if (d == 64) {
      BlockScores<4>(qh, kb, valid, s);
    } else if (d == 128) {
      BlockScores<8>(qh, kb, valid, s);
    } else {
      for (int64_t j = 0; j < valid; ++j) s[j] = Dot(qh, kb + j * d, d);
    }
    for (int64_t j = 0; j < valid; ++j) s[j] *= a.scale;
    OnlineSoftmaxStep(s, valid, &m[hh], &l[hh], acc_h, d);
    if (d == 64) {
      AddWeightedRows<4>(s, vb, valid, acc_h);
    } else if (d == 128) {
      AddWeightedRows<8>(s, vb, valid, acc_h);
    } else {
      for (int64_t j = 0; j < valid; ++j) Axpy(s[j], vb + j * d, acc_h, d);
    }
  }
}

// One query and group: online softmax over its blocks (decode and tiny chunks).
void AttendOneQuery(const AttentionArgs& a, int64_t t, int64_t g) {
  thread_local std::vector<float> acc, m, l, s;
  acc.assign(a.hg * a.d, 0.0f);
  m.assign(a.hg, -kInf);
  l.assign(a.hg, 0.0f);
  s.resize(a.B);
  const int64_t p = a.first_position + t, bp = p / a.B, d = a.d;
  const float* qt = a.q + t * a.q_stride + g * a.hg * d;
  const int32_t* list = a.list(t, g);
  const int64_t count = list ? a.topk : bp + 1;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t b = list ? list[i] : i;
    if (b < 0 || b > bp) continue;
    AttendBlockDirect(a, qt, a.keys[g].pages[b], a.values[g].pages[b],
                      std::min(a.B, p - a.B * b + 1), m.data(), l.data(), acc.data(), s.data());
  }
  for (int64_t hh = 0; hh < a.hg; ++hh) {
    float* o = a.out + t * a.out_stride + (g * a.hg + hh) * d;
    const float inv = 1.0f / l[hh];
    for (int64_t i = 0; i < d; ++i) o[i] = acc[hh * d + i] * inv;
  }
}

// Attention tiles: at most this many queries, and softmax state of at most this many floats.
constexpr int64_t kAttendTile = 1024;
constexpr int64_t kAttendStateFloats = int64_t{256} << 10;
// Blocks read by at most this many queries of a tile skip the GEMMs (and the gathering).
constexpr int64_t kDirectQueries = 4;

// The queries t0 .. t0+nq-1 of group g, over several query blocks: each key block in the
// union of their selections is read once for all the queries that selected it, with two
// small GEMMs whose rows are those queries' heads of the group (adjacent in q), or directly
// when only a few queries read it. Selected blocks are mostly far from L2, so reading each
// once per tile rather than once per query is what bounds the cost at long contexts.
void AttendTile(const AttentionArgs& a, int64_t t0, int64_t nq, int64_t g) {
  const int64_t d = a.d, B = a.B, hg = a.hg, w = hg * d;
  const int64_t p_first = a.first_position + t0, p_last = p_first + nq - 1;
  const int64_t bq = p_last / B;
  // users[start[b] .. start[b+1]) = the queries (ascending) that read block b.
  thread_local std::vector<int32_t> start, users, fill;
  thread_local std::vector<float> scores, acc, m, l, gathered;
  auto for_each_read = [&](auto&& read) {  // read(t, b) for every (query, block) pair
    for (int64_t t = 0; t < nq; ++t) {
      const int64_t bp = (p_first + t) / B;
      if (const int32_t* list = a.list(t0 + t, g)) {
        for (int64_t i = 0; i < a.topk; ++i) {
          if (list[i] >= 0 && list[i] <= bp) read(t, list[i]);
        }
      } else {
        for (int64_t b = 0; b <= bp; ++b) read(t, b);
      }
    }
  };
  start.assign(bq + 2, 0);
  for_each_read([&](int64_t, int64_t b) { ++start[b + 1]; });
  for (int64_t b = 0; b <= bq; ++b) start[b + 1] += start[b];
  users.resize(start[bq + 1]);
  fill.assign(start.begin(), start.end() - 1);
  for_each_read([&](int64_t t, int64_t b) { users[fill[b]++] = static_cast<int32_t>(t); });
  scores.resize(nq * hg * B);
  gathered.resize(nq * w);
  acc.assign(nq * w, 0.0f);  // [t][hh][d]
  m.assign(nq * hg, -kInf);
  l.assign(nq * hg, 0.0f);
  for (int64_t b = 0; b <= bq; ++b) {
    const int32_t* rows_of = users.data() + start[b];
    const int64_t n = start[b + 1] - start[b];
    if (n == 0) continue;
    const int64_t rows = std::min(B, p_last - B * b + 1);
    if (n <= kDirectQueries) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = rows_of[i];
        AttendBlockDirect(a, a.q + (t0 + t) * a.q_stride + g * w, a.keys[g].pages[b],
                          a.values[g].pages[b], std::min(rows, p_first + t - B * b + 1),
                          &m[t * hg], &l[t * hg], acc.data() + t * w, scores.data());
      }
      continue;
    }
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(a.q + (t0 + rows_of[i]) * a.q_stride + g * w, w, gathered.data() + i * w);
    }
    MatMulTransB(gathered.data(), a.keys[g].pages[b], scores.data(), n * hg, rows, d, 0.0f, d,
                 d, B);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = rows_of[i];
      const int64_t valid = std::min(rows, p_first + t - B * b + 1);
      for (int64_t hh = 0; hh < hg; ++hh) {
        float* st = scores.data() + (i * hg + hh) * B;
        for (int64_t j = 0; j < valid; ++j) st[j] *= a.scale;
        OnlineSoftmaxStep(st, valid, &m[t * hg + hh], &l[t * hg + hh],
                          acc.data() + t * w + hh * d, d);
        std::fill(st + valid, st + rows, 0.0f);
      }
    }
    MatMul(scores.data(), a.values[g].pages[b], gathered.data(), n * hg, d, rows, 0.0f, B, d, d);
    for (int64_t i = 0; i < n; ++i) {
      Axpy(1.0f, gathered.data() + i * w, acc.data() + rows_of[i] * w, w);
    }
  }
  for (int64_t t = 0; t < nq; ++t) {
    for (int64_t hh = 0; hh < hg; ++hh) {
      float* o = a.out + (t0 + t) * a.out_stride + (g * hg + hh) * d;
      const float* src = acc.data() + t * w + hh * d;
      const float inv = 1.0f / l[t * hg + hh];
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
  // Tiles of up to kAttendTile queries; their softmax state is nq · Hq/G · d floats.
  const int64_t tile = std::clamp<int64_t>(kAttendStateFloats / (args.hg * head_dim), kMinTile,
                                           kAttendTile);
  const int64_t tiles = (num_tokens + tile - 1) / tile;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t w = 0; w < tiles * num_groups; ++w) {
    const int64_t t0 = (w / num_groups) * tile;
    AttendTile(args, t0, std::min(tile, num_tokens - t0), w % num_groups);
  }
}

}  // namespace tome::kernels::cpu
