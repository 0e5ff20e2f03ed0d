#include "read_pool.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/env.h"
#include "tome/storage/context_store.h"

namespace tome::storage {
namespace {

// Every index runs exactly once, on several threads, and Run returns only after all have.
TEST(ReadPoolTest, RunsEachIndexOnceAndWaitsForAll) {
  for (int threads : {0, 1, 8}) {
    SCOPED_TRACE(threads);
    ReadPool pool(threads);
    for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{16}, size_t{1000}}) {
      std::vector<std::atomic<int>> calls(n);
      std::atomic<int> running{0}, most{0};
      pool.Run(n, [&](size_t i) {
        const int now = ++running;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        ++calls[i];
        --running;
      });
      EXPECT_EQ(running.load(), 0);
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(calls[i].load(), 1) << i;
      if (threads == 0) {
        EXPECT_LE(most.load(), 1);
      }
      if (threads == 8 && n == 1000) {
        EXPECT_GT(most.load(), 1);  // really in parallel
      }
    }
  }
}

// Runs from several threads at once queue; each still sees all of its indices done.
TEST(ReadPoolTest, ConcurrentCallersEachGetTheirWholeJob) {
  ReadPool pool(4);
  std::vector<std::thread> callers;
  std::atomic<int> failures{0};
  for (int c = 0; c < 6; ++c) {
    callers.emplace_back([&] {
      for (int round = 0; round < 20; ++round) {
        std::vector<std::atomic<int>> calls(37);
        pool.Run(calls.size(), [&](size_t i) { ++calls[i]; });
        for (auto& n : calls) {
          if (n.load() != 1) ++failures;
        }
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(ReadPoolTest, StoreRefusesAnOutOfRangeThreadCount) {
  std::unique_ptr<rocksdb::Env> mem(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  StoreOptions options;
  options.model_fingerprint = "fp";
  options.env = mem.get();
  for (int threads : {-1, 65}) {
    options.read_threads = threads;
    auto store = ContextStore::Open("/mem/store", options);
    EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(store.status().message(), ::testing::HasSubstr("read_threads"));
  }
}

}  // namespace
}  // namespace tome::storage
