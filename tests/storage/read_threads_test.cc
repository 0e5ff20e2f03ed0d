// The context store's parallel reads: its thread count is checked when the store opens.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/env.h"
#include "tome/storage/context_store.h"

namespace tome::storage {
namespace {

TEST(StoreReadThreadsTest, AnOutOfRangeCountIsRefused) {
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
