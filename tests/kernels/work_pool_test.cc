#include "tome/base/work_pool.h"

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tome {
namespace {

// Every index runs exactly once, on several threads, and Run returns only after all have.
TEST(WorkPoolTest, RunsEachIndexOnceAndWaitsForAll) {
  for (int threads : {0, 1, 8}) {
    SCOPED_TRACE(threads);
    WorkPool pool(threads);
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

// Runs from several threads at once share the helpers; each sees all of its indices done.
TEST(WorkPoolTest, ConcurrentCallersEachGetTheirWholeJob) {
  WorkPool pool(4);
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

// A Run does not wait for another Run's calls: here the first job's calls wait until the
// second job has finished, while they hold the only helper.
TEST(WorkPoolTest, ARunProceedsWhileAnotherRunsCallsBlock) {
  WorkPool pool(1);
  std::promise<void> second_done;
  std::shared_future<void> done = second_done.get_future().share();
  std::atomic<int> timed_out{0}, started{0};
  std::thread first([&] {
    pool.Run(2, [&](size_t) {
      ++started;
      if (done.wait_for(std::chrono::seconds(20)) != std::future_status::ready) ++timed_out;
    });
  });
  while (started.load() < 2) std::this_thread::yield();  // both calls hold their threads
  std::atomic<int> calls{0};
  pool.Run(5, [&](size_t) { ++calls; });
  second_done.set_value();
  first.join();
  EXPECT_EQ(calls.load(), 5);
  EXPECT_EQ(timed_out.load(), 0);
}

}  // namespace
}  // namespace tome
