// The background reads of a sequence opened on demand (PendingLoad): layer order, the bound
// on how far the reader runs ahead, errors of reads and of building, stopping early; and the
// staging memory they read into (StagingPool).
#include "pending_load.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "staging_pool.h"
#include "tests/testutil/map_store.h"

namespace tome::engine {
namespace {

constexpr int kLayers = 6, kRecordsPerLayer = 10;
constexpr int64_t kSlot = 64;

std::string RecordBytes(int layer, int index) {
  return std::string(static_cast<size_t>(16 + index), static_cast<char>('a' + layer));
}

class PendingLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_shared<testing::MapStore>();
    for (int l = 0; l < kLayers; ++l) {
      PendingLoad::Layer& layer = layers_.emplace_back();
      layer.layer = 10 + l;
      for (int i = 0; i < kRecordsPerLayer; ++i) {
        const StateRecordKey key{StateRecordKind::kSummaryK1, 10 + l, 0, i, 4};
        layer.keys.push_back(key);
        ASSERT_TRUE(store_->Put(key, RecordBytes(l, i)).ok());
      }
    }
  }

  // `count` heap buffers with room for a layer's records.
  static std::vector<std::shared_ptr<void>> Staging(int count) {
    std::vector<std::shared_ptr<void>> out;
    for (int i = 0; i < count; ++i) {
      out.emplace_back(std::malloc(kRecordsPerLayer * kSlot), std::free);
    }
    return out;
  }

  // Waits (up to a second) until the reader has read `reads` records, then a little longer.
  void SettleAt(int64_t reads) {
    for (int i = 0; i < 1000 && store_->reads() < reads; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  std::shared_ptr<testing::MapStore> store_;
  std::vector<PendingLoad::Layer> layers_;
};

TEST_F(PendingLoadTest, ReadsLayersInOrderAtMostTwoAheadOfTheirUse) {
  PendingLoad load(store_, layers_, kSlot, /*read_threads=*/2, /*ahead=*/2, Staging(2));
  SettleAt(2 * kRecordsPerLayer);
  EXPECT_EQ(store_->reads(), 2 * kRecordsPerLayer);  // two layers, then it waits
  for (int l = 0; l < kLayers; ++l) {
    absl::StatusOr<const ReadRecords*> read = load.Wait(l);
    ASSERT_TRUE(read.ok()) << read.status();
    for (int i = 0; i < kRecordsPerLayer; ++i) {
      EXPECT_TRUE((*read)->staged(i));
      EXPECT_EQ(std::string((*read)->record(i), (*read)->sizes[i]), RecordBytes(l, i));
    }
    load.Release(l, absl::OkStatus());
    SettleAt(std::min(l + 3, kLayers) * kRecordsPerLayer);
    EXPECT_EQ(store_->reads(), std::min(l + 3, kLayers) * kRecordsPerLayer) << "layer " << l;
  }
  EXPECT_TRUE(load.failure().ok());
}

TEST_F(PendingLoadTest, WithoutStagingTheRecordsStayAsRead) {
  PendingLoad load(store_, layers_, kSlot, 0, 2, {});
  absl::StatusOr<const ReadRecords*> read = load.Wait(0);
  ASSERT_TRUE(read.ok());
  EXPECT_FALSE((*read)->staged(3));
  EXPECT_EQ(std::string((*read)->record(3), (*read)->sizes[3]), RecordBytes(0, 3));
}

TEST_F(PendingLoadTest, AReadErrorIsTheAnswerForItsLayerAndEveryLaterOne) {
  store_->Edit([](auto& records) {
    records.erase({int(StateRecordKind::kSummaryK1), 13, 0, 5, 4});
  });
  PendingLoad load(store_, layers_, kSlot, 2, 2, Staging(2));
  for (int l = 0; l < 3; ++l) {
    ASSERT_TRUE(load.Wait(l).ok());
    load.Release(l, absl::OkStatus());
  }
  EXPECT_EQ(load.Wait(3).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(load.Wait(5).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(load.failure().code(), absl::StatusCode::kNotFound);
}

TEST_F(PendingLoadTest, ALayerThatCannotBeBuiltFailsTheLoadFromThere) {
  PendingLoad load(store_, layers_, kSlot, 2, 2, Staging(2));
  ASSERT_TRUE(load.Wait(0).ok());
  load.Release(0, absl::OkStatus());
  ASSERT_TRUE(load.Wait(1).ok());
  load.Release(1, absl::DataLossError("summary page has the wrong size"));
  EXPECT_EQ(load.Wait(1).status().code(), absl::StatusCode::kDataLoss);  // no hang
  EXPECT_EQ(load.Wait(2).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(load.failure().code(), absl::StatusCode::kDataLoss);
}

TEST_F(PendingLoadTest, DroppingItStopsTheReader) {
  for (int i = 0; i < 20; ++i) {
    PendingLoad load(store_, layers_, kSlot, 2, 2, Staging(2));
    if (i % 2 == 0) ASSERT_TRUE(load.Wait(0).ok());  // mid-way or before the first read
  }
  EXPECT_LE(store_->reads(), 20 * 2 * kRecordsPerLayer);
}

StagingPool::Allocator CountingAllocator(int* calls, bool device_readable) {
  return [calls, device_readable](int64_t bytes) -> absl::StatusOr<Backend::HostMemory> {
    ++*calls;
    return Backend::HostMemory{std::shared_ptr<void>(std::malloc(bytes), std::free),
                               device_readable};
  };
}

TEST(StagingPoolTest, ReusesBuffersGivenBackAndOutlivesNothing) {
  int calls = 0;
  auto pool = std::make_unique<StagingPool>(CountingAllocator(&calls, true));
  auto a = pool->Take(1000).value(), b = pool->Take(1000).value();
  EXPECT_EQ(calls, 2);
  EXPECT_NE(a.get(), b.get());
  void* const a_memory = a.get();
  a.reset();
  auto c = pool->Take(500).value();  // a smaller request takes the buffer given back
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(c.get(), a_memory);
  auto d = pool->Take(5000).value();  // none large enough: a new one
  EXPECT_EQ(calls, 3);
  std::memset(d.get(), 1, 5000);
  pool.reset();  // buffers still held stay valid, then are freed (ASan checks both)
  std::memset(b.get(), 2, 1000);
}

TEST(StagingPoolTest, NoneWhereTheBackendReadsNoHostMemoryInPlace) {
  int calls = 0;
  StagingPool pool(CountingAllocator(&calls, false));
  EXPECT_EQ(pool.Take(100).value(), nullptr);
  EXPECT_EQ(pool.Take(100).value(), nullptr);
  EXPECT_EQ(calls, 1);  // asked once
}

}  // namespace
}  // namespace tome::engine
