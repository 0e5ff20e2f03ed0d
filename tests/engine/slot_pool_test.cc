#include "slot_pool.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <set>

namespace tome::engine {
namespace {

SlotPool::ChunkAllocator CountingAllocator(int* calls) {
  return [calls](int64_t bytes) -> absl::StatusOr<std::shared_ptr<void>> {
    ++*calls;
    return std::shared_ptr<void>(std::malloc(bytes), std::free);
  };
}

TEST(SlotPoolTest, CarvesDistinctSlotsFromChunksAndReusesGivenBackOnes) {
  int calls = 0;
  SlotPool pool(64, 4, CountingAllocator(&calls));
  std::vector<std::shared_ptr<void>> held;
  std::set<void*> addresses;
  for (int i = 0; i < 6; ++i) {
    auto slot = pool.Take();
    ASSERT_TRUE(slot.ok()) << slot.status();
    addresses.insert(slot->get());
    held.push_back(*std::move(slot));
  }
  EXPECT_EQ(addresses.size(), 6u);
  EXPECT_EQ(calls, 2);  // 4 slots a chunk
  EXPECT_EQ(pool.free_slots(), 2);
  void* given_back = held[3].get();
  held.erase(held.begin() + 3);
  EXPECT_EQ(pool.free_slots(), 3);
  auto again = pool.Take();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), given_back);  // the last slot given back comes first
  EXPECT_EQ(calls, 2);
}

TEST(SlotPoolTest, SlotsMayOutliveThePool) {
  int calls = 0;
  std::shared_ptr<void> slot;
  {
    SlotPool pool(32, 2, CountingAllocator(&calls));
    slot = *pool.Take();
  }
  std::memset(slot.get(), 7, 32);  // the chunk is still alive (ASan would object otherwise)
  slot.reset();
}

TEST(SlotPoolTest, ReportsAFailedChunkAllocation) {
  SlotPool pool(16, 8, [](int64_t) -> absl::StatusOr<std::shared_ptr<void>> {
    return absl::ResourceExhaustedError("no memory");
  });
  auto slot = pool.Take();
  EXPECT_EQ(slot.status().code(), absl::StatusCode::kResourceExhausted);
  SlotPool null_pool(16, 8, [](int64_t) -> absl::StatusOr<std::shared_ptr<void>> {
    return std::shared_ptr<void>();
  });
  EXPECT_EQ(null_pool.Take().status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace tome::engine
