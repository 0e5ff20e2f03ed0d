// The CUDA page-table cache on its own: views whose pages change by small deltas every step
// (a storage-backed sparse layer's decode calls) must find their device tables equal to the
// host pointers after each upload, through a deliberately small pinned entry ring that wraps
// around many times, and through the copy path when a delta does not fit in the ring.
#include "cuda/page_tables.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "gpu_test_util.h"
#include "gtest/gtest.h"
#include "paged_buffer.h"
#include "tome/kernels/cuda/spin.h"

namespace tome::engine {
namespace {

const void* FakePage(uint64_t n) { return reinterpret_cast<const void*>((n + 1) * 4096); }

TEST(PageTableCacheTest, DeltaUploadsThroughAWrappingRingKeepEveryTableCurrent) {
  if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  constexpr int64_t kPages = 400, kSteps = 300, kViews = 4;
  constexpr size_t kRingHalf = 48;  // entries: a step's four deltas wrap it often
  PagedBuffer source(nullptr, DType::kBF16, 64, 128);
  for (int64_t i = 0; i < kPages; ++i) source.AppendAbsentPage();
  std::vector<PagedBuffer> views(kViews);
  std::mt19937 rng(7);
  uint64_t next_page = 0;
  // Every table as uploaded, snapshotted in stream order; the host's pointers beside them.
  void* snapshots = nullptr;
  ASSERT_EQ(cudaMalloc(&snapshots, kSteps * kViews * kPages * sizeof(void*)), cudaSuccess);
  std::vector<std::vector<const void*>> want;
  {
    PageTableCache cache(stream, /*drain_before_upload=*/false, kRingHalf);
    // The device waits while the host writes many steps' entries: a ring half refilled
    // before the device has read it would show in the snapshots.
    ASSERT_EQ(kernels::cuda::Spin(200000, stream), cudaSuccess);
    for (int64_t step = 0; step < kSteps; ++step) {
      for (int64_t v = 0; v < kViews; ++v) {
        PagedBuffer& view = views[v];
        view.ResetView(source);
        // Mostly fewer entries than half the ring; every tenth step more than a half holds
        // (the copy path), at most a quarter of the pages (still a scattered upload).
        const size_t count = step % 10 == 9 ? 90 : 1 + rng() % 30;
        std::set<int64_t> pages;
        while (pages.size() < count) pages.insert(static_cast<int64_t>(rng() % kPages));
        for (int64_t p : pages) view.SetViewPage(p, FakePage(next_page++));
        auto table = cache.View(view);
        ASSERT_TRUE(table.ok()) << table.status();
        ASSERT_EQ(
            cudaMemcpyAsync(static_cast<const void**>(snapshots) + (step * kViews + v) * kPages,
                            table->pages, kPages * sizeof(void*), cudaMemcpyDeviceToDevice, stream),
            cudaSuccess);
        want.push_back(view.page_pointers());
      }
    }
    std::vector<const void*> got(kSteps * kViews * kPages);
    ASSERT_EQ(cudaMemcpyAsync(got.data(), snapshots, got.size() * sizeof(void*),
                              cudaMemcpyDeviceToHost, stream),
              cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    for (size_t i = 0; i < want.size(); ++i) {
      const std::vector<const void*> table(got.begin() + i * kPages,
                                           got.begin() + (i + 1) * kPages);
      ASSERT_EQ(table, want[i]) << "step " << i / kViews << ", view " << i % kViews;
    }
  }
  EXPECT_EQ(cudaFree(snapshots), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

}  // namespace
}  // namespace tome::engine
