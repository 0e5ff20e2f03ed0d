// Storage-backed sparse attention: a sequence loaded on demand (KV blocks left in the store,
// fetched through the block cache when selected) gives the same logits as one loaded whole,
// under cache budgets small enough to evict and refetch blocks on every step.
#include <memory>
#include <tuple>

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

  // An engine on the same model that reads a sequence opened on demand in full before
  // LoadStateOnDemand returns.
  std::unique_ptr<Engine> LoadingInFullEngine() {
    EngineOptions options;
    options.model_dir = dir_.path();
    options.max_chunk_tokens = 64;
    options.overlap_state_loading = false;
    return Engine::Create(options).value();
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
    // ... and a layer's missing blocks come from the store in batched reads. (The first
    // step's store reads also hold the background load's: the summaries.)
    if (t == kStored) continue;
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
  store_->Edit([](auto& records) { records.clear(); });  // lost everything after the load
  const auto more = absl::MakeConstSpan(tokens_).subspan(kStored, 64);
  const auto status = engine_->Prefill(*seq, more).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_EQ(engine_->LoadStateOnDemand(kStored, nullptr, cache, "x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// One batched decode step over two on-demand sessions of different documents and lengths
// and a resident one (their selections come to the host in one copy per layer): each
// session's logits equal those of a resident session of its document decoding alone. Top-k
// 8, so that steps select absent blocks, different ones for the two documents.
TEST_F(OnDemandTest, BatchedDecodeOfSeveralOnDemandSessionsEqualsResident) {
  ModelConfig config = config_;
  config.sparse.topk = 8;
  testing::TempDir dir;
  testing::WriteModel(config, dir.path(), 42);
  EngineOptions options;
  options.model_dir = dir.path();
  options.max_chunk_tokens = 64;
  auto engine = Engine::Create(options).value();
  std::vector<int32_t> other(tokens_.rbegin(), tokens_.rend());
  constexpr int64_t kOther = 700;  // the second document's length
  auto store_a = std::make_shared<MapStore>(/*keep_longest_only=*/true);
  auto store_b = std::make_shared<MapStore>(/*keep_longest_only=*/true);
  for (auto [doc, n, store] :
       {std::tuple{&tokens_, kStored, store_a.get()}, std::tuple{&other, kOther, store_b.get()}}) {
    auto seq = engine->NewSequence().value();
    engine->Prefill(*seq, absl::MakeConstSpan(*doc).first(n)).value();
    ASSERT_TRUE(engine->SaveState(*seq, 0, *store).ok());
  }
  auto cache = engine->NewBlockCache(3 * BlockBytes(), 4 * BlockBytes());
  auto a = engine->LoadStateOnDemand(kStored, store_a, cache, "a@1").value();
  auto b = engine->LoadStateOnDemand(kOther, store_b, cache, "b@1").value();
  auto c = engine->LoadState(kStored, *store_a).value();
  auto a_alone = engine->LoadState(kStored, *store_a).value();
  auto b_alone = engine->LoadState(kOther, *store_b).value();
  for (int64_t s = 0; s < 12; ++s) {
    const int32_t ta = tokens_[kStored + s], tb = other[kOther + s], tc = tokens_[s];
    Sequence* batch[] = {a.get(), c.get(), b.get()};
    const int32_t batch_tokens[] = {ta, tc, tb};
    const auto got = engine->DecodeBatch(batch, batch_tokens).value();
    Sequence* one_a[] = {a_alone.get()};
    Sequence* one_b[] = {b_alone.get()};
    const auto want_a = engine->DecodeBatch(one_a, absl::MakeConstSpan(&ta, 1)).value();
    const auto want_b = engine->DecodeBatch(one_b, absl::MakeConstSpan(&tb, 1)).value();
    ASSERT_LT(MaxRelativeError(got[0], want_a[0]), kTol) << "step " << s;
    ASSERT_LT(MaxRelativeError(got[2], want_b[0]), kTol) << "step " << s;
  }
  EXPECT_GT(cache->stats().source_reads, 0);
}

// LoadStateOnDemand returns once the Lightning states are in; the sparse layers' summaries
// and last blocks arrive in the background and the forward pass takes each layer when it
// reaches it. Logits, forks made before the first forward pass, memory accounting and Save
// match a load read in full.
TEST_F(OnDemandTest, BackgroundLoadEqualsLoadingInFull) {
  const auto more = absl::MakeConstSpan(tokens_).subspan(kStored);
  const auto expected = ResidentLogits(more);
  auto in_full = LoadingInFullEngine();
  auto cache = engine_->NewBlockCache(2 * BlockBytes(), 4 * BlockBytes());
  auto full_cache = in_full->NewBlockCache(2 * BlockBytes(), 4 * BlockBytes());
  auto read_in_full = in_full->LoadStateOnDemand(kStored, store_, full_cache, "doc@1").value();
  auto seq = engine_->LoadStateOnDemand(kStored, store_, cache, "doc@1").value();
  EXPECT_EQ(seq->OwnedBytes(), read_in_full->OwnedBytes());  // counted before they arrive
  // Two forks before any forward pass: each takes the layers as its own pass reaches them.
  auto first = engine_->Fork(*seq).value();
  auto second = engine_->Fork(*seq).value();
  PrefillOptions all;
  all.all_logits = true;
  const auto got_full = in_full->Prefill(*read_in_full, more, all).value();
  EXPECT_LT(MaxRelativeError(got_full, expected), kTol);
  const auto got_second = engine_->Prefill(*second, more, all).value();
  EXPECT_EQ(got_second, got_full);  // the same pages and math: bit for bit
  EXPECT_EQ(engine_->Prefill(*first, more, all).value(), got_full);
  EXPECT_EQ(engine_->Prefill(*seq, more, all).value(), got_full);
  EXPECT_TRUE(seq->LoadStatus().ok());
  // Save straight after a load finishes the load first.
  auto fresh = engine_->LoadStateOnDemand(kStored, store_, cache, "doc@1").value();
  MapStore copy;
  ASSERT_TRUE(engine_->SaveState(*fresh, 0, copy).ok());
  auto reloaded = engine_->LoadState(kStored, copy).value();
  EXPECT_LT(MaxRelativeError(engine_->Prefill(*reloaded, more, all).value(), expected), kTol);
}

// A damaged summary page of the last sparse layer: read in full, LoadStateOnDemand refuses
// it; read in the background, the load succeeds and the forward pass (of the sequence and of
// every fork) returns the error, which LoadStatus then reports.
TEST_F(OnDemandTest, BackgroundReadErrorSurfacesInTheForwardPass) {
  int last_sparse = -1;
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    if (config_.mixer_types[l] != MixerType::kLightning) last_sparse = static_cast<int>(l);
  }
  int damaged = 0;
  store_->Edit([&](auto& records) {
    for (auto& [key, bytes] : records) {
      if (std::get<0>(key) == int(StateRecordKind::kSummaryK1) && std::get<1>(key) == last_sparse) {
        bytes.resize(bytes.size() - 1);
        ++damaged;
      }
    }
  });
  ASSERT_GT(damaged, 0);
  auto cache = engine_->NewBlockCache(2 * BlockBytes(), 0);
  EXPECT_EQ(
      LoadingInFullEngine()->LoadStateOnDemand(kStored, store_, cache, "doc@1").status().code(),
      absl::StatusCode::kDataLoss);
  auto seq = engine_->LoadStateOnDemand(kStored, store_, cache, "doc@1").value();
  auto fork = engine_->Fork(*seq).value();
  const auto more = absl::MakeConstSpan(tokens_).subspan(kStored, 8);
  EXPECT_EQ(engine_->Prefill(*fork, more).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(engine_->Prefill(*seq, more).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(seq->LoadStatus().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(fork->LoadStatus().code(), absl::StatusCode::kDataLoss);
  MapStore copy;
  EXPECT_EQ(engine_->SaveState(*seq, 0, copy).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace tome::engine
