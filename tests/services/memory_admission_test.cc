// Admission control for engine memory (services/src/memory_admission.h): fits, queues in
// arrival order, times out, refuses what can never fit, honours cancellation.
#include "memory_admission.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tome::services {
namespace {

using ::testing::HasSubstr;

const std::function<bool()> kNever = [] { return false; };

absl::Time In(absl::Duration d) { return absl::Now() + d; }

TEST(MemoryAdmissionTest, NoBudgetAdmitsEverything) {
  MemoryAdmission admission(0, "--ask_memory_mb");
  auto t = admission.Acquire(int64_t{1} << 50, In(absl::Seconds(1)), kNever);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(admission.in_use_bytes(), 0);
}

TEST(MemoryAdmissionTest, ReservesAndReleases) {
  MemoryAdmission admission(100, "--ask_memory_mb");
  {
    auto a = admission.Acquire(60, In(absl::Seconds(1)), kNever);
    auto b = admission.Acquire(40, In(absl::Seconds(1)), kNever);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(admission.in_use_bytes(), 100);
    MemoryAdmission::Ticket moved = std::move(*a);
    EXPECT_EQ(moved.bytes(), 60);
    EXPECT_EQ(admission.in_use_bytes(), 100);  // a move keeps the reservation
  }
  EXPECT_EQ(admission.in_use_bytes(), 0);
}

TEST(MemoryAdmissionTest, RefusesWhatCanNeverFitAtOnce) {
  MemoryAdmission admission(100 << 20, "--ask_memory_mb");
  const absl::Time start = absl::Now();
  auto t = admission.Acquire(101 << 20, In(absl::Seconds(10)), kNever);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  ASSERT_EQ(t.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("needs about 101 MiB"));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("--ask_memory_mb"));
  EXPECT_EQ(admission.refused(), 1);
}

TEST(MemoryAdmissionTest, WaitsForMemoryThenRuns) {
  MemoryAdmission admission(100, "--ask_memory_mb");
  auto held = std::make_unique<MemoryAdmission::Ticket>(
      admission.Acquire(80, In(absl::Seconds(1)), kNever).value());
  std::atomic<bool> admitted{false};
  std::thread waiter([&] {
    auto t = admission.Acquire(50, In(absl::Seconds(20)), kNever);
    EXPECT_TRUE(t.ok()) << t.status();
    admitted = true;
  });
  while (admission.waiting() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(admitted);  // 80 + 50 > 100
  held.reset();
  waiter.join();
  EXPECT_TRUE(admitted);
  EXPECT_EQ(admission.waited(), 1);
  EXPECT_EQ(admission.in_use_bytes(), 0);
}

TEST(MemoryAdmissionTest, TimesOutWithTheReason) {
  MemoryAdmission admission(100 << 20, "--ask_memory_mb");
  auto held = admission.Acquire(90 << 20, In(absl::Seconds(1)), kNever);
  ASSERT_TRUE(held.ok());
  auto t = admission.Acquire(20 << 20, In(absl::Milliseconds(100)), kNever);
  ASSERT_EQ(t.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("90 MiB in use"));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("retry"));
  EXPECT_EQ(admission.waiting(), 0);
  // The one that gave up does not block the queue.
  auto next = admission.Acquire(10 << 20, In(absl::Seconds(1)), kNever);
  EXPECT_TRUE(next.ok()) << next.status();
}

TEST(MemoryAdmissionTest, CancelledWhileWaiting) {
  MemoryAdmission admission(100, "--ask_memory_mb");
  auto held = admission.Acquire(100, In(absl::Seconds(1)), kNever);
  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    cancel = true;
  });
  auto t = admission.Acquire(1, In(absl::Seconds(20)), [&] { return cancel.load(); });
  canceller.join();
  EXPECT_EQ(t.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(admission.refused(), 0);
}

// First come, first served: a large request at the head is not overtaken by small ones that
// would fit, so it cannot starve.
TEST(MemoryAdmissionTest, ArrivalOrderPreventsStarvation) {
  MemoryAdmission admission(100, "--ask_memory_mb");
  auto held = std::make_unique<MemoryAdmission::Ticket>(
      admission.Acquire(60, In(absl::Seconds(1)), kNever).value());
  std::vector<int> order;
  std::mutex mu;
  std::thread big([&] {
    auto t = admission.Acquire(100, In(absl::Seconds(20)), kNever);
    ASSERT_TRUE(t.ok());
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(100);
  });
  while (admission.waiting() < 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::thread small([&] {
    auto t = admission.Acquire(10, In(absl::Seconds(20)), kNever);  // would fit now
    ASSERT_TRUE(t.ok());
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(10);
  });
  while (admission.waiting() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(order.empty());  // the small one waits behind the big one
  }
  held.reset();
  big.join();
  small.join();
  EXPECT_EQ(order, (std::vector<int>{100, 10}));
}

}  // namespace
}  // namespace tome::services
