// PagedBuffer on the CPU backend: appends that start mid-page and span pages (one
// Backend::WriteRows each), copy-on-write of a shared partial page, shared full pages, and
// the page stamp that tells a device page-table cache when the pointers changed.
// backend_ops_test runs the same checks on the CUDA backend's WriteRows kernel.
#include "paged_buffer.h"

#include <algorithm>
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

// The stamp changes exactly when the page pointers do: a cache that sees an equal stamp may
// skip comparing them.
TEST(PagedBufferTest, PageStampChangesWithThePagePointers) {
  std::unique_ptr<Backend> cpu = NewCpuBackend(1);
  std::vector<float> source(200 * 3, 1.0f);
  const Tensor src{source.data(), DType::kF32, 200, 3, 3};
  PagedBuffer a(cpu.get(), DType::kF32, 64, 3);
  PagedBuffer other(cpu.get(), DType::kF32, 64, 3);
  EXPECT_NE(a.page_stamp(), other.page_stamp());  // never shared by unrelated buffers
  uint64_t s = a.page_stamp();
  ASSERT_TRUE(a.Append(src.Rows(0, 10)).ok());  // a new page
  EXPECT_NE(a.page_stamp(), s);
  s = a.page_stamp();
  ASSERT_TRUE(a.Append(src.Rows(10, 20)).ok());  // rows into the same page: pointers unchanged
  EXPECT_EQ(a.page_stamp(), s);
  PagedBuffer b = a.Fork();  // same pointers, same stamp
  EXPECT_EQ(b.page_stamp(), s);
  ASSERT_TRUE(b.Append(src.Rows(30, 1)).ok());  // copy-on-write of the shared partial page
  EXPECT_NE(b.page_stamp(), s);
  EXPECT_EQ(a.page_stamp(), s);
  ASSERT_TRUE(a.Append(src.Rows(31, 100)).ok());  // fills page 0 (a alone holds it now), adds two
  EXPECT_NE(a.page_stamp(), s);

  PagedBuffer view;
  view.AssignView(a);
  EXPECT_EQ(view.page_stamp(), a.page_stamp());
  EXPECT_EQ(view.page_pointers(), a.page_pointers());
  const uint64_t before_set = view.page_stamp();
  view.SetViewPage(0, b.page(0));
  EXPECT_NE(view.page_stamp(), before_set);
  s = a.page_stamp();
  a.DropPage(0);
  EXPECT_NE(a.page_stamp(), s);
  s = a.page_stamp();
  PagedBuffer moved = std::move(a);  // the pointers move with the stamp; the source's go
  EXPECT_EQ(moved.page_stamp(), s);
  EXPECT_NE(a.page_stamp(), s);  // NOLINT(bugprone-use-after-move): checking the moved-from state
}

// A view reset to its unchanged source puts back only the pages set since, and names them
// (with the removed and newly set pages) as its delta from the stamp a device table saw.
TEST(PagedBufferTest, ResetViewPutsBackTheSetPagesAndRecordsTheDelta) {
  std::unique_ptr<Backend> cpu = NewCpuBackend(1);
  std::vector<float> source(600 * 3, 1.0f);
  const Tensor src{source.data(), DType::kF32, 600, 3, 3};
  PagedBuffer stored(cpu.get(), DType::kF32, 64, 3), other(cpu.get(), DType::kF32, 64, 3);
  ASSERT_TRUE(stored.Append(src.Rows(0, 300)).ok());  // 5 pages, the last partial
  ASSERT_TRUE(other.Append(src.Rows(0, 300)).ok());

  PagedBuffer view;
  view.ResetView(stored);  // never a view before: a full assignment, no delta
  EXPECT_EQ(view.page_pointers(), stored.page_pointers());
  EXPECT_EQ(view.view_delta_base(), 0u);
  view.SetViewPage(1, other.page(1));
  view.SetViewPage(3, other.page(3));
  const uint64_t seen = view.page_stamp();  // what a device table would have uploaded

  ASSERT_TRUE(stored.Append(src.Rows(300, 5)).ok());  // rows into the last page: same pointers
  view.ResetView(stored);
  EXPECT_EQ(view.page_pointers(), stored.page_pointers());
  EXPECT_EQ(view.num_rows(), 305);
  EXPECT_NE(view.page_stamp(), seen);
  EXPECT_EQ(view.view_delta_base(), seen);
  view.SetViewPage(3, other.page(3));
  view.SetViewPage(0, other.page(0));
  std::vector<int64_t> delta = view.view_delta();
  std::sort(delta.begin(), delta.end());
  EXPECT_EQ(delta, (std::vector<int64_t>{0, 1, 3, 3}));  // 1 and 3 put back; 3 and 0 set
  std::vector<const void*> want = stored.page_pointers();
  want[0] = other.page(0);
  want[3] = other.page(3);
  EXPECT_EQ(view.page_pointers(), want);

  ASSERT_TRUE(stored.Append(src.Rows(305, 100)).ok());  // new pages: a full assignment again
  view.ResetView(stored);
  EXPECT_EQ(view.page_pointers(), stored.page_pointers());
  EXPECT_EQ(view.view_delta_base(), 0u);
}

}  // namespace
}  // namespace tome::engine
