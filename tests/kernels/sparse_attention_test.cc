// InfLLM-v2 CPU kernels against direct, slow implementations of docs/MODEL-SEMANTICS.md.
#include "tome/kernels/cpu/sparse_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace tome::kernels::cpu {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Host pages holding a [rows, width] matrix.
struct Paged {
  std::vector<std::vector<float>> storage;
  std::vector<const float*> ptrs;
  PagedRows<float> view;

  Paged(const std::vector<float>& dense, int64_t rows, int64_t width, int64_t per_page) {
    for (int64_t r0 = 0; r0 < rows; r0 += per_page) {
      std::vector<float> page(per_page * width, std::nanf(""));  // poison the unused tail
      const int64_t n = std::min(per_page, rows - r0);
      std::copy(dense.begin() + r0 * width, dense.begin() + (r0 + n) * width, page.begin());
      storage.push_back(std::move(page));
    }
    for (auto& p : storage) ptrs.push_back(p.data());
    view = PagedRows<float>{ptrs.data(), per_page, width, rows};
  }
};

std::vector<float> Random(int64_t n, uint64_t seed, float stddev = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<float> Means(const std::vector<float>& keys, int64_t n, int64_t d, int64_t w,
                         int64_t s) {
  const int64_t count = n < w ? 0 : (n - w) / s + 1;
  std::vector<float> out(count * d, 0.0f);
  for (int64_t j = 0; j < count; ++j)
    for (int64_t t = j * s; t < j * s + w; ++t)
      for (int64_t i = 0; i < d; ++i) out[j * d + i] += keys[t * d + i] / w;
  return out;
}

// Direct selection for one query and group, following MODEL-SEMANTICS.md line by line.
std::vector<int32_t> NaiveSelect(const std::vector<const float*>& qs, const std::vector<float>& k1,
                                 const std::vector<float>& k2, int64_t d, int64_t p,
                                 const SparseParams& sp, float scale) {
  const int64_t B = sp.block_size, bp = p / B, nb = bp + 1;
  const int64_t n1 = sp.NumK1(p + 1), n2 = sp.NumK2(p + 1);
  std::vector<double> sc(n1, 0.0);
  for (const float* q : qs) {
    double lse = -INFINITY;
    if (n2 > 0) {
      double m = -INFINITY;
      std::vector<double> x(n2);
      for (int64_t j = 0; j < n2; ++j) {
        double dot = 0;
        for (int64_t i = 0; i < d; ++i) dot += double(q[i]) * k2[j * d + i];
        x[j] = scale * dot;
        m = std::max(m, x[j]);
      }
      double sum = 0;
      for (double v : x) sum += std::exp(v - m);
      lse = m + std::log(sum);
    }
    for (int64_t j = 0; j < n1; ++j) {
      double dot = 0;
      for (int64_t i = 0; i < d; ++i) dot += double(q[i]) * k1[j * d + i];
      sc[j] += n2 == 0 ? INFINITY : std::exp(scale * dot - lse);
    }
  }
  std::vector<double> score(nb);
  for (int64_t b = 0; b < nb; ++b) {
    if (b < sp.init_blocks || b >= bp - sp.local_blocks) {
      score[b] = INFINITY;
      continue;
    }
    score[b] = -INFINITY;
    for (int64_t j = 0; j < n1; ++j) {
      const bool overlaps = j * sp.kernel_stride < B * b + B && j * sp.kernel_stride + sp.kernel_size > B * b;
      if (overlaps) score[b] = std::max(score[b], sc[j]);
    }
  }
  std::vector<int32_t> order(nb);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return score[a] > score[b]; });
  order.resize(std::min<int64_t>(nb, sp.topk_total));
  std::sort(order.begin(), order.end());
  order.resize(sp.topk_total, -1);
  return order;
}

SparseParams SmallParams() {
  SparseParams sp;
  sp.block_size = 64;
  sp.kernel_size = 32;
  sp.kernel_stride = 16;
  sp.init_blocks = 1;
  sp.local_blocks = 2;
  sp.topk_total = 6;
  return sp;
}

TEST(SparseAttentionTest, WindowMeansMatchDirectMeans) {
  const int64_t n = 300, d = 8;
  const auto keys = Random(n * d, 1);
  Paged paged(keys, n, d, 64);
  for (auto [w, s] : {std::pair<int64_t, int64_t>{32, 16}, {128, 64}}) {
    const auto expected = Means(keys, n, d, w, s);
    const int64_t count = expected.size() / d;
    std::vector<float> out(count * d);
    WindowMeans(paged.view, 0, count, w, s, out.data());
    for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], expected[i], 1e-5);
    // A later run of windows alone gives the same values.
    if (count > 3) {
      std::vector<float> tail((count - 3) * d);
      WindowMeans(paged.view, 3, count - 3, w, s, tail.data());
      for (size_t i = 0; i < tail.size(); ++i) EXPECT_NEAR(tail[i], expected[3 * d + i], 1e-5);
    }
  }
}

TEST(SparseAttentionTest, SelectBlocksMatchesDirectRules) {
  const SparseParams sp = SmallParams();
  const int64_t N = 1500, d = 16, Hq = 4, G = 2, hg = Hq / G;
  const float scale = 1.0f / std::sqrt(float(d));
  for (uint64_t seed : {1, 2, 3}) {
    std::vector<std::vector<float>> keys(G), k1(G), k2(G);
    std::vector<Paged> p1, p2;
    std::vector<PagedRows<float>> v1, v2;
    for (int64_t g = 0; g < G; ++g) {
      keys[g] = Random(N * d, 10 * seed + g, 0.5f);
      k1[g] = Means(keys[g], N, d, 32, 16);
      k2[g] = Means(keys[g], N, d, 128, 64);
    }
    for (int64_t g = 0; g < G; ++g) {
      p1.emplace_back(k1[g], k1[g].size() / d, d, 256);
      p2.emplace_back(k2[g], k2[g].size() / d, d, 256);
    }
    for (int64_t g = 0; g < G; ++g) {
      v1.push_back(p1[g].view);
      v2.push_back(p2[g].view);
    }
    // A chunk of queries at the end of the sequence (positions N-T .. N-1).
    const int64_t T = 200, first = N - T;
    const auto q = Random(T * Hq * d, 100 + seed);
    std::vector<int32_t> selected(T * G * sp.topk_total);
    SelectBlocks(q.data(), T, Hq, G, d, Hq * d, first, v1.data(), v2.data(), sp, scale,
                 selected.data(), nullptr);
    int64_t checked = 0;
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t g = 0; g < G; ++g) {
        std::vector<const float*> qs;
        for (int64_t hh = 0; hh < hg; ++hh) qs.push_back(q.data() + t * Hq * d + (g * hg + hh) * d);
        const auto expected = NaiveSelect(qs, k1[g], k2[g], d, first + t, sp, scale);
        const std::vector<int32_t> got(selected.begin() + (t * G + g) * sp.topk_total,
                                       selected.begin() + (t * G + g + 1) * sp.topk_total);
        ASSERT_EQ(got, expected) << "seed " << seed << " position " << first + t << " group " << g;
        ++checked;
      }
    }
    EXPECT_EQ(checked, T * G);
  }
}

// Dense softmax attention of one head over an explicit set of visible tokens.
std::vector<double> NaiveAttention(const float* q, const std::vector<float>& keys,
                                   const std::vector<float>& values, int64_t d,
                                   const std::vector<int64_t>& tokens, float scale) {
  std::vector<double> s;
  double m = -INFINITY;
  for (int64_t t : tokens) {
    double dot = 0;
    for (int64_t i = 0; i < d; ++i) dot += double(q[i]) * keys[t * d + i];
    s.push_back(scale * dot);
    m = std::max(m, s.back());
  }
  double sum = 0;
  std::vector<double> out(d, 0.0);
  for (size_t j = 0; j < tokens.size(); ++j) {
    const double e = std::exp(s[j] - m);
    sum += e;
    for (int64_t i = 0; i < d; ++i) out[i] += e * values[tokens[j] * d + i];
  }
  for (double& x : out) x /= sum;
  return out;
}

TEST(SparseAttentionTest, BlockSparseAttentionMatchesMaskedSoftmax) {
  const int64_t N = 700, d = 16, Hq = 4, G = 2, hg = Hq / G, B = 64, topk = 4;
  const float scale = 0.25f;
  std::vector<std::vector<float>> keys(G), values(G);
  std::vector<Paged> pk, pv;
  for (int64_t g = 0; g < G; ++g) {
    keys[g] = Random(N * d, 20 + g);
    values[g] = Random(N * d, 30 + g);
    pk.emplace_back(keys[g], N, d, B);
    pv.emplace_back(values[g], N, d, B);
  }
  std::vector<PagedRows<float>> vk, vv;
  for (int64_t g = 0; g < G; ++g) {
    vk.push_back(pk[g].view);
    vv.push_back(pv[g].view);
  }
  const int64_t T = 130, first = N - T;  // queries straddle blocks 8..10
  const auto q = Random(T * Hq * d, 40);
  // An arbitrary selection per (query, group): block 0, two pseudo-random blocks, own block.
  std::vector<int32_t> selected(T * G * topk, -1);
  std::mt19937 rng(5);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t g = 0; g < G; ++g) {
      const int64_t bp = (first + t) / B;
      std::vector<int32_t> s = {0, int32_t(1 + rng() % (bp - 1)), int32_t(bp)};
      std::sort(s.begin(), s.end());
      s.erase(std::unique(s.begin(), s.end()), s.end());
      std::copy(s.begin(), s.end(), selected.begin() + (t * G + g) * topk);
    }
  }
  for (bool dense : {false, true}) {
    std::vector<float> out(T * Hq * d);
    BlockSparseAttention(q.data(), T, Hq, G, d, Hq * d, first, vk.data(), vv.data(), B,
                         dense ? nullptr : selected.data(), topk, scale, out.data(), Hq * d);
    double max_err = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t p = first + t;
      for (int64_t h = 0; h < Hq; ++h) {
        const int64_t g = h / hg;
        std::vector<int64_t> visible;
        for (int64_t tau = 0; tau <= p; ++tau) {
          const int32_t* sel = selected.data() + (t * G + g) * topk;
          const bool in_sel = dense || std::find(sel, sel + topk, int32_t(tau / B)) != sel + topk;
          if (in_sel) visible.push_back(tau);
        }
        const auto expected = NaiveAttention(q.data() + t * Hq * d + h * d, keys[g], values[g],
                                             d, visible, scale);
        for (int64_t i = 0; i < d; ++i) {
          max_err = std::max(max_err, std::abs(out[t * Hq * d + h * d + i] - expected[i]));
        }
      }
    }
    EXPECT_LT(max_err, 1e-5) << (dense ? "dense" : "sparse");
  }
}

// The shipped model's shapes (d = 64, two heads per group, 4 local blocks, top 20) and
// summary pages of 100 rows, so that score tiles straddle pages: the tiled stage 1 and the
// thresholded top-k must pick exactly the blocks of the direct rules, with and without the
// optional scores output.
TEST(SparseAttentionTest, SelectBlocksMatchesDirectRulesAtModelShapes) {
  SparseParams sp;
  sp.local_blocks = 4;
  sp.topk_total = 20;
  const int64_t N = 6000, d = 64, Hq = 4, G = 2, hg = Hq / G;
  const float scale = 1.0f / std::sqrt(float(d));
  std::vector<std::vector<float>> k1(G), k2(G);
  std::vector<Paged> p1, p2;
  std::vector<PagedRows<float>> v1, v2;
  for (int64_t g = 0; g < G; ++g) {
    const auto keys = Random(N * d, 50 + g, 0.5f);
    k1[g] = Means(keys, N, d, 32, 16);
    k2[g] = Means(keys, N, d, 128, 64);
    p1.emplace_back(k1[g], k1[g].size() / d, d, 100);
    p2.emplace_back(k2[g], k2[g].size() / d, d, 100);
  }
  for (int64_t g = 0; g < G; ++g) {
    v1.push_back(p1[g].view);
    v2.push_back(p2[g].view);
  }
  const int64_t T = 260, first = N - T;
  const auto q = Random(T * Hq * d, 60);
  for (bool with_scores : {false, true}) {
    std::vector<int32_t> selected(T * G * sp.topk_total);
    std::vector<float> scores(with_scores ? selected.size() : 0);
    SelectBlocks(q.data(), T, Hq, G, d, Hq * d, first, v1.data(), v2.data(), sp, scale,
                 selected.data(), with_scores ? scores.data() : nullptr);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t g = 0; g < G; ++g) {
        std::vector<const float*> qs;
        for (int64_t hh = 0; hh < hg; ++hh) qs.push_back(q.data() + t * Hq * d + (g * hg + hh) * d);
        const auto expected = NaiveSelect(qs, k1[g], k2[g], d, first + t, sp, scale);
        const std::vector<int32_t> got(selected.begin() + (t * G + g) * sp.topk_total,
                                       selected.begin() + (t * G + g + 1) * sp.topk_total);
        ASSERT_EQ(got, expected) << "position " << first + t << " group " << g;
      }
    }
  }
}

// Model shapes, with selections that mix blocks every query reads (block 0, the local ones)
// with blocks read by a few or a single query, chunks starting mid-block; 3 queries take the
// one-query path (decode).
TEST(SparseAttentionTest, BlockSparseAttentionMatchesMaskedSoftmaxAtModelShapes) {
  const int64_t N = 3000, d = 64, Hq = 4, G = 2, hg = Hq / G, B = 64, topk = 8;
  const float scale = 0.125f;
  std::vector<std::vector<float>> keys(G), values(G);
  std::vector<Paged> pk, pv;
  for (int64_t g = 0; g < G; ++g) {
    keys[g] = Random(N * d, 70 + g);
    values[g] = Random(N * d, 80 + g);
    pk.emplace_back(keys[g], N, d, B);
    pv.emplace_back(values[g], N, d, B);
  }
  std::vector<PagedRows<float>> vk, vv;
  for (int64_t g = 0; g < G; ++g) {
    vk.push_back(pk[g].view);
    vv.push_back(pv[g].view);
  }
  for (int64_t T : {200, 3}) {
    const int64_t first = N - T - 37;
    const auto q = Random(T * Hq * d, 90 + T);
    std::vector<int32_t> selected(T * G * topk, -1);
    std::mt19937 rng(9);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t g = 0; g < G; ++g) {
        const int64_t bp = (first + t) / B;
        std::vector<int32_t> s = {0, int32_t(bp - 2), int32_t(bp - 1), int32_t(bp),
                                  int32_t(1 + rng() % 4), int32_t(1 + rng() % (bp - 3))};
        std::sort(s.begin(), s.end());
        s.erase(std::unique(s.begin(), s.end()), s.end());
        std::copy(s.begin(), s.end(), selected.begin() + (t * G + g) * topk);
      }
    }
    std::vector<float> out(T * Hq * d);
    BlockSparseAttention(q.data(), T, Hq, G, d, Hq * d, first, vk.data(), vv.data(), B,
                         selected.data(), topk, scale, out.data(), Hq * d);
    double max_err = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t p = first + t;
      for (int64_t h = 0; h < Hq; ++h) {
        const int64_t g = h / hg;
        const int32_t* sel = selected.data() + (t * G + g) * topk;
        std::vector<int64_t> visible;
        for (int64_t tau = 0; tau <= p; ++tau) {
          if (std::find(sel, sel + topk, int32_t(tau / B)) != sel + topk) visible.push_back(tau);
        }
        const auto expected = NaiveAttention(q.data() + t * Hq * d + h * d, keys[g], values[g],
                                             d, visible, scale);
        for (int64_t i = 0; i < d; ++i) {
          max_err = std::max(max_err, std::abs(out[t * Hq * d + h * d + i] - expected[i]));
        }
      }
    }
    EXPECT_LT(max_err, 1e-5) << T << " queries";
  }
}

TEST(SparseAttentionTest, LocalWindowOnlySelectionIsNotTheRealOne) {
  // With many candidate blocks, the data-dependent top-k must pick blocks outside the
  // init + local window for some queries; a window-only port would never do so.
  const SparseParams sp = SmallParams();
  const int64_t N = 2048, d = 16, Hq = 2, G = 1;
  const auto keys = Random(N * d, 77, 0.5f);
  auto k1 = Means(keys, N, d, 32, 16), k2 = Means(keys, N, d, 128, 64);
  Paged p1(k1, k1.size() / d, d, 256), p2(k2, k2.size() / d, d, 256);
  const int64_t T = 64, first = N - T;
  const auto q = Random(T * Hq * d, 78);
  std::vector<int32_t> selected(T * G * sp.topk_total);
  SelectBlocks(q.data(), T, Hq, G, d, Hq * d, first, &p1.view, &p2.view, sp, 0.25f,
               selected.data(), nullptr);
  int64_t outside = 0;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t bp = (first + t) / 64;
    for (int64_t i = 0; i < sp.topk_total; ++i) {
      const int32_t b = selected[t * sp.topk_total + i];
      if (b >= sp.init_blocks && b < bp - sp.local_blocks) ++outside;
    }
  }
  EXPECT_GT(outside, 0);
}

}  // namespace
}  // namespace tome::kernels::cpu
