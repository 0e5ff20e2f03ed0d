// PagedBuffer on the CPU backend: appends that start mid-page and span pages (one
// Backend::WriteRows each), copy-on-write of a shared partial page, shared full pages.
// backend_ops_test runs the same checks on the CUDA backend's WriteRows kernel.
#include "paged_buffer.h"

#include <vector>

#include "backend.h"
#include "gtest/gtest.h"

namespace tome::engine {
namespace {

std::vector<float> RowsOf(const PagedBuffer& p) {
  std::vector<float> out;
  for (int64_t page = 0; page < p.num_pages(); ++page) {
    const float* data = static_cast<const float*>(p.page(page));
    out.insert(out.end(), data, data + p.rows_in_page(page) * p.width());
  }
  return out;
}

TEST(PagedBufferTest, AppendsAcrossPagesAndCopiesASharedPartialPageOnWrite) {
  std::unique_ptr<Backend> cpu = NewCpuBackend(1);
  const int64_t width = 5, stride = 7, n = 172;
  std::vector<float> source(n * stride, -1.0f);  // -1 between the rows: never copied
  std::vector<float> want(n * width);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < width; ++c) source[r * stride + c] = want[r * width + c] = r + 0.01f * c;
  }
  const Tensor src{source.data(), DType::kF32, n, width, stride};
  auto rows = [&](int64_t first, int64_t count) {
    return std::vector<float>(want.begin() + first * width, want.begin() + (first + count) * width);
  };
  PagedBuffer a(cpu.get(), DType::kF32, 64, width);
  ASSERT_TRUE(a.Append(src.Rows(0, 0)).ok());
  EXPECT_EQ(a.num_pages(), 0);
  ASSERT_TRUE(a.Append(src.Rows(0, 10)).ok());
  ASSERT_TRUE(a.Append(src.Rows(10, 150)).ok());  // rows 10..159: the rest of page 0, 1, part of 2
  EXPECT_EQ(a.num_rows(), 160);
  EXPECT_EQ(a.num_pages(), 3);
  EXPECT_EQ(a.rows_in_page(2), 32);
  PagedBuffer b = a.Fork();
  ASSERT_TRUE(b.Append(src.Rows(160, 7)).ok());
  ASSERT_TRUE(a.Append(src.Rows(167, 5)).ok());
  EXPECT_EQ(a.page(1), b.page(1));  // full pages stay shared
  EXPECT_NE(a.page(2), b.page(2));  // the partial page was copied before writing
  std::vector<float> want_a = rows(0, 160), want_b = rows(0, 160);
  for (float x : rows(167, 5)) want_a.push_back(x);
  for (float x : rows(160, 7)) want_b.push_back(x);
  EXPECT_EQ(RowsOf(a), want_a);
  EXPECT_EQ(RowsOf(b), want_b);
  EXPECT_FALSE(a.Append(Tensor{source.data(), DType::kF32, 1, width + 1, stride}).ok());
  EXPECT_EQ(a.num_rows(), 165);
}

}  // namespace
}  // namespace tome::engine
