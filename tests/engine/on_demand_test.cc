// Storage-backed sparse attention: a sequence loaded on demand (KV blocks left in the store,
// fetched through the block cache when selected) gives the same logits as one loaded whole,
// under cache budgets small enough to evict and refetch blocks on every step.
#include <memory>

#include "gtest/gtest.h"
#include "tests/testutil/map_store.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_models.h"
#include "tome/engine/engine.h"

namespace tome::engine {
namespace {

using testing::MapStore;
using testing::MaxRelativeError;

constexpr double kTol = 1e-4;  // fp32, same kernels; differences come from chunking only
constexpr int64_t kStored = 900;  // tokens saved (15 blocks of 64 in the tiny config)

class OnDemandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::TinyConfig();
    testing::WriteModel(config_, dir_.path(), 42);
    EngineOptions options;
    options.model_dir = dir_.path();
    options.max_chunk_tokens = 64;
    engine_ = Engine::Create(options).value();
    tokens_ = testing::RandomTokens(1000, config_.vocab_size, 11);
    auto seq = engine_->NewSequence().value();
    engine_->Prefill(*seq, absl::MakeConstSpan(tokens_).first(kStored)).value();
    store_ = std::make_shared<MapStore>(/*keep_longest_only=*/true);
    ASSERT_TRUE(engine_->SaveState(*seq, 0, *store_).ok());
  }

  // Bytes of one stored block (keys and values) of one head.
  int64_t BlockBytes() const { return 2 * 64 * config_.head_dim * 4; }

  std::vector<float> ResidentLogits(absl::Span<const int32_t> more) {
    auto seq = engine_->LoadState(kStored, *store_).value();
    PrefillOptions all;
    all.all_logits = true;
    return engine_->Prefill(*seq, more, all).value();
  }

  testing::TempDir dir_;
  ModelConfig config_;
  std::unique_ptr<Engine> engine_;
  std::vector<int32_t> tokens_;
  std::shared_ptr<MapStore> store_;
};

TEST_F(OnDemandTest, PrefillEqualsResidentUnderTinyBudgets) {
  const auto more = absl::MakeConstSpan(tokens_).subspan(kStored);
  const auto expected = ResidentLogits(more);
  // Room for two blocks on the "device", none in host memory: most reads go to the store.
  auto cache = engine_->NewBlockCache(2 * BlockBytes(), 0);
  auto seq = engine_->LoadStateOnDemand(kStored, store_, cache, "doc@1").value();
  EXPECT_TRUE(seq->on_demand());
  PrefillOptions all;
  all.all_logits = true;
  const auto got = engine_->Prefill(*seq, more, all).value();
  EXPECT_LT(MaxRelativeError(got, expected), kTol);
  const BlockCacheStats stats = cache->stats();
  EXPECT_GT(stats.source_reads, 0);
  EXPECT_GT(stats.device_evictions, 0);
  EXPECT_LE(stats.device_bytes, 2 * BlockBytes());
}

TEST_F(OnDemandTest, DecodeEqualsResidentAndReadsOnlySelectedBlocks) {
  auto resident = engine_->LoadState(kStored, *store_).value();
  auto cache = engine_->NewBlockCache(3 * BlockBytes(), 8 * BlockBytes());
  auto seq = engine_->LoadStateOnDemand(kStored, store_, cache, "doc@1").value();
  // Loading on demand holds less: only the last blocks' KV.
  EXPECT_LT(seq->OwnedBytes(), resident->OwnedBytes());
  for (int64_t t = kStored; t < kStored + 20; ++t) {
    Sequence* both[] = {resident.get()};
    Sequence* lazy[] = {seq.get()};
    const int32_t token = tokens_[t];
    const auto want = engine_->DecodeBatch(both, absl::MakeConstSpan(&token, 1)).value();
    const int64_t reads_before = cache->stats().source_reads;
    const int64_t store_reads_before = store_->reads(), batches_before = store_->batches();
    const auto got = engine_->DecodeBatch(lazy, absl::MakeConstSpan(&token, 1)).value();
    ASSERT_LT(MaxRelativeError(got[0], want[0]), kTol) << "position " << t;
    // One query per head group and sparse layer selects at most topk_total blocks.
    const int64_t sparse_layers = config_.num_sparse_layers();
    const int64_t reads = cache->stats().source_reads - reads_before;
    EXPECT_LE(reads, sparse_layers * config_.num_kv_heads * config_.sparse.topk_total());
    // ... and a layer's missing blocks come from the store in batched reads.
    const int64_t batches = store_->batches() - batches_before;
    EXPECT_EQ(store_->reads() - store_reads_before, reads);
    EXPECT_LE(batches, sparse_layers + reads / static_cast<int64_t>(tome::engine::kStateReadBatch));
    EXPECT_GE(batches * static_cast<int64_t>(tome::engine::kStateReadBatch), reads);
  }
  const BlockCacheStats stats = cache->stats();
  EXPECT_GT(stats.host_hits + stats.device_hits, 0);  // later steps reuse fetched blocks
}

TEST_F(OnDemandTest, ForkAndSaveOfAnOnDemandSequence) {
  const auto more = absl::MakeConstSpan(tokens_).subspan(kStored, 40);
  auto cache = engine_->NewBlockCache(4 * BlockBytes(), 0);
  auto seq = engine_->LoadStateOnDemand(kStored, store_, cache, "doc@1").value();
  auto fork = engine_->Fork(*seq).value();
  EXPECT_TRUE(fork->on_demand());
  const auto expected = ResidentLogits(more);
  const std::vector<float> expected_last(expected.end() - config_.vocab_size, expected.end());
  EXPECT_LT(MaxRelativeError(engine_->Prefill(*fork, more).value(), expected_last), kTol);
  // Saving everything writes the absent blocks too (fetched from the store), so a resident
  // load of the copy continues exactly.
  MapStore copy;
  ASSERT_TRUE(engine_->SaveState(*fork, 0, copy).ok());
  auto reloaded = engine_->LoadState(kStored + 40, copy).value();
  const auto next = absl::MakeConstSpan(tokens_).subspan(kStored + 40, 10);
  auto reference = engine_->LoadState(kStored, *store_).value();
  engine_->Prefill(*reference, more).value();
  EXPECT_LT(MaxRelativeError(engine_->Prefill(*reloaded, next).value(),
                             engine_->Prefill(*reference, next).value()),
            kTol);
}

// A sequence in memory whose state is saved lets its stored blocks go (ingestion of a
// document larger than engine memory) and continues exactly as before; a fork made earlier
// keeps its pages.
TEST_F(OnDemandTest, MovingBlocksToStorageKeepsTheLogits) {
  const auto more = absl::MakeConstSpan(tokens_).subspan(kStored);
  const auto expected = ResidentLogits(more);
  auto seq = engine_->LoadState(kStored, *store_).value();
  const int64_t before = seq->OwnedBytes();
  auto cache = engine_->NewBlockCache(2 * BlockBytes(), 0);
  ASSERT_TRUE(engine_->MoveBlocksToStorage(*seq, store_, cache, "doc@1").ok());
  EXPECT_TRUE(seq->on_demand());
  // 15 blocks of 64, of which the last 3 stay: 12 blocks of every group of every sparse layer
  // left memory.
  EXPECT_EQ(before - seq->OwnedBytes(),
            12 * config_.num_sparse_layers() * config_.num_kv_heads * BlockBytes());
  PrefillOptions all;
  all.all_logits = true;
  EXPECT_LT(MaxRelativeError(engine_->Prefill(*seq, more, all).value(), expected), kTol);
  EXPECT_GT(cache->stats().source_reads, 0);

  auto kept = engine_->LoadState(kStored, *store_).value();
  auto fork = engine_->Fork(*kept).value();
  ASSERT_TRUE(engine_->MoveBlocksToStorage(*kept, store_, cache, "doc@1").ok());
  EXPECT_FALSE(fork->on_demand());
  EXPECT_LT(MaxRelativeError(engine_->Prefill(*fork, more, all).value(), expected), kTol);
  EXPECT_EQ(engine_->MoveBlocksToStorage(*fork, nullptr, cache, "x").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(OnDemandTest, MissingBlockFailsTheForwardPassNotTheProcess) {
  auto cache = engine_->NewBlockCache(2 * BlockBytes(), 0);
  auto seq = engine_->LoadStateOnDemand(kStored, store_, cache, "doc@1").value();
  store_->records_.clear();  // the store lost everything after the load
  const auto more = absl::MakeConstSpan(tokens_).subspan(kStored, 64);
  const auto status = engine_->Prefill(*seq, more).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_EQ(engine_->LoadStateOnDemand(kStored, nullptr, cache, "x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tome::engine
