// Whole-engine exactness on a tiny random model whose sparse layers select 3 of up to 16
// blocks: one-shot prefill == chunked prefill == prefill-then-decode == save/restore.
#include "tome/engine/engine.h"

#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/map_store.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_models.h"

namespace tome::engine {
namespace {

using testing::MaxRelativeError;

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::TinyConfig();
    testing::WriteModel(config_, dir_.path(), 42);
  }

  std::unique_ptr<Engine> MakeEngine(int64_t chunk, DenseThresholdMode mode =
                                                        DenseThresholdMode::kAlwaysSparse) {
    EngineOptions options;
    options.model_dir = dir_.path();
    options.max_chunk_tokens = chunk;
    options.dense_mode = mode;
    auto engine = Engine::Create(options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return std::move(engine).value();
  }

  std::vector<float> PrefillAll(Engine& engine, const std::vector<int32_t>& tokens) {
    auto seq = engine.NewSequence().value();
    PrefillOptions options;
    options.all_logits = true;
    return engine.Prefill(*seq, tokens, options).value();
  }

  testing::TempDir dir_;
  ModelConfig config_;
};

constexpr double kTol = 1e-4;  // fp32, different summation orders

TEST_F(EngineTest, ChunkedPrefillEqualsOneShot) {
  const auto tokens = testing::RandomTokens(1000, config_.vocab_size, 1);
  auto one_shot = MakeEngine(4096);
  const auto expected = PrefillAll(*one_shot, tokens);
  for (int64_t chunk : {1, 7, 64, 100, 333}) {
    auto engine = MakeEngine(chunk);
    EXPECT_LT(MaxRelativeError(PrefillAll(*engine, tokens), expected), kTol) << chunk;
  }
  // Split across Prefill calls too.
  auto seq = one_shot->NewSequence().value();
  std::vector<float> last;
  for (size_t start = 0; start < tokens.size(); start += 123) {
    const size_t n = std::min<size_t>(123, tokens.size() - start);
    last = one_shot->Prefill(*seq, absl::MakeConstSpan(tokens).subspan(start, n)).value();
  }
  const std::vector<float> expected_last(expected.end() - config_.vocab_size, expected.end());
  EXPECT_LT(MaxRelativeError(last, expected_last), kTol);
}

TEST_F(EngineTest, PrefillThenDecodeEqualsOneShot) {
  const auto tokens = testing::RandomTokens(700, config_.vocab_size, 2);
  auto engine = MakeEngine(512);
  const auto expected = PrefillAll(*engine, tokens);
  auto seq = engine->NewSequence().value();
  const int64_t split = 640, V = config_.vocab_size;
  engine->Prefill(*seq, absl::MakeConstSpan(tokens).first(split)).value();
  for (int64_t t = split; t < 700; ++t) {
    auto logits = engine->Prefill(*seq, absl::MakeConstSpan(&tokens[t], 1)).value();
    const std::vector<float> want(expected.begin() + t * V, expected.begin() + (t + 1) * V);
    ASSERT_LT(MaxRelativeError(logits, want), kTol) << "position " << t;
  }
}

using testing::MapStore;

TEST_F(EngineTest, SaveRestoreContinueEqualsUninterrupted) {
  const auto tokens = testing::RandomTokens(900, config_.vocab_size, 3);
  auto engine = MakeEngine(256);
  auto reference = engine->NewSequence().value();
  const auto expected = engine->Prefill(*reference, tokens).value();

  MapStore store;
  auto seq = engine->NewSequence().value();
  engine->Prefill(*seq, absl::MakeConstSpan(tokens).first(500)).value();
  ASSERT_TRUE(engine->SaveState(*seq, 0, store).ok());
  // Incremental save after more tokens rewrites only the tail.
  engine->Prefill(*seq, absl::MakeConstSpan(tokens).subspan(500, 100)).value();
  const size_t records_before = store.records_.size();
  ASSERT_TRUE(engine->SaveState(*seq, 500, store).ok());
  EXPECT_GT(store.records_.size(), records_before);

  auto fresh_engine = MakeEngine(64);
  // The shorter prefix stays loadable (its records were never overwritten).
  auto prefix = fresh_engine->LoadState(500, store).value();
  const auto from_prefix =
      fresh_engine->Prefill(*prefix, absl::MakeConstSpan(tokens).subspan(500)).value();
  EXPECT_LT(MaxRelativeError(from_prefix, expected), kTol);
  auto restored = fresh_engine->LoadState(600, store).value();
  EXPECT_EQ(restored->num_tokens(), 600);
  const auto got = fresh_engine->Prefill(*restored, absl::MakeConstSpan(tokens).subspan(600)).value();
  EXPECT_LT(MaxRelativeError(got, expected), kTol);

  // A missing record is reported, not crashed on.
  ASSERT_EQ(store.records_.erase({int(StateRecordKind::kLightningState), 1, 0, 600, 0}), 1u);
  EXPECT_EQ(fresh_engine->LoadState(600, store).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(EngineTest, ShorterPrefixesLoadFromLongerRecords) {
  const auto tokens = testing::RandomTokens(900, config_.vocab_size, 8);
  auto engine = MakeEngine(128);
  auto reference = engine->NewSequence().value();
  const auto expected = engine->Prefill(*reference, tokens).value();
  MapStore store(/*keep_longest_only=*/true);
  auto seq = engine->NewSequence().value();
  engine->Prefill(*seq, absl::MakeConstSpan(tokens).first(500)).value();
  ASSERT_TRUE(engine->SaveState(*seq, 0, store).ok());
  engine->Prefill(*seq, absl::MakeConstSpan(tokens).subspan(500, 300)).value();
  ASSERT_TRUE(engine->SaveState(*seq, 500, store).ok());
  // Block 7 (tokens 448..511) now has only its full 64-row record; loading 500 tokens uses
  // its first 52 rows, and summaries likewise.
  EXPECT_EQ(store.records_.count({int(StateRecordKind::kKvBlock), 0, 0, 7, 52}), 0u);
  auto restored = engine->LoadState(500, store).value();
  const auto got = engine->Prefill(*restored, absl::MakeConstSpan(tokens).subspan(500)).value();
  EXPECT_LT(MaxRelativeError(got, expected), kTol);
}

TEST_F(EngineTest, ForksAreIndependent) {
  const auto tokens = testing::RandomTokens(300, config_.vocab_size, 4);
  auto engine = MakeEngine(128);
  auto base = engine->NewSequence().value();
  engine->Prefill(*base, absl::MakeConstSpan(tokens).first(200)).value();  // ends mid-block
  auto fork = engine->Fork(*base).value();
  const auto a = engine->Prefill(*fork, absl::MakeConstSpan(tokens).subspan(200, 50)).value();
  // The base continues differently; the fork's state must not change underneath it.
  const auto other = testing::RandomTokens(50, config_.vocab_size, 5);
  engine->Prefill(*base, other).value();
  auto fork2 = engine->NewSequence().value();
  engine->Prefill(*fork2, absl::MakeConstSpan(tokens).first(250)).value();
  const auto next_a = engine->Prefill(*fork, absl::MakeConstSpan(&tokens[250], 1)).value();
  const auto next_b = engine->Prefill(*fork2, absl::MakeConstSpan(&tokens[250], 1)).value();
  EXPECT_LT(MaxRelativeError(next_a, next_b), kTol);
  // The fork shares the three full blocks with the base; fork2 owns everything.
  EXPECT_LT(fork->OwnedBytes(), fork2->OwnedBytes());
}

TEST_F(EngineTest, HfModeIsDenseBelowThreshold) {
  // Below dense_len, HF mode attends densely; always-sparse selects 3 blocks. Different.
  const auto tokens = testing::RandomTokens(600, config_.vocab_size, 6);
  auto hf = MakeEngine(4096, DenseThresholdMode::kHf);
  auto sparse = MakeEngine(4096);
  const auto a = PrefillAll(*hf, tokens);
  const auto b = PrefillAll(*sparse, tokens);
  // Identical while every block is selected (first 3 blocks), different afterwards.
  const int64_t V = config_.vocab_size;
  const std::vector<float> a_early(a.begin(), a.begin() + 190 * V), b_early(b.begin(), b.begin() + 190 * V);
  EXPECT_LT(MaxRelativeError(a_early, b_early), kTol);
  EXPECT_GT(MaxRelativeError(a, b), 1e-2);
}

TEST_F(EngineTest, GenerateIsDeterministicAndStops) {
  auto engine = MakeEngine(256);
  const auto prompt = testing::RandomTokens(50, config_.vocab_size, 7);
  std::vector<std::vector<int32_t>> runs;
  for (int i = 0; i < 2; ++i) {
    auto seq = engine->NewSequence().value();
    auto logits = engine->Prefill(*seq, prompt).value();
    GenerateOptions options;
    options.max_new_tokens = 20;
    options.sampling.temperature = 0.8f;
    options.sampling.seed = 99;
    auto result = engine->Generate(*seq, logits, options).value();
    EXPECT_LE(result.tokens.size(), 20u);
    runs.push_back(result.tokens);
  }
  EXPECT_EQ(runs[0], runs[1]);
}

TEST_F(EngineTest, BatchedDecodeEqualsOneSequenceAtATime) {
  // Two dynamic slots per query (the tiny preset's 3 blocks are all forced).
  config_.sparse.topk = 4;
  testing::WriteModel(config_, dir_.path(), 42);
  auto engine = MakeEngine(256);
  // Three sequences of different lengths (one below the top-k, two above it).
  const std::vector<int64_t> lengths = {100, 700, 1300};
  std::vector<std::unique_ptr<Sequence>> batched, single;
  for (size_t i = 0; i < lengths.size(); ++i) {
    const auto prompt = testing::RandomTokens(lengths[i], config_.vocab_size, 20 + i);
    for (auto* list : {&batched, &single}) {
      list->push_back(engine->NewSequence().value());
      engine->Prefill(*list->back(), prompt).value();
    }
  }
  const std::vector<int32_t> tokens = {7, 8, 9};
  std::vector<Sequence*> seqs = {batched[0].get(), batched[1].get(), batched[2].get()};
  std::vector<std::vector<double>> evidence(3);
  std::vector<std::vector<double>*> evidence_ptrs = {&evidence[0], &evidence[1], &evidence[2]};
  for (int step = 0; step < 3; ++step) {
    auto logits = engine->DecodeBatch(seqs, tokens, evidence_ptrs).value();
    for (size_t i = 0; i < seqs.size(); ++i) {
      auto expected = engine->Prefill(*single[i], absl::MakeConstSpan(&tokens[i], 1)).value();
      EXPECT_LT(MaxRelativeError(logits[i], expected), kTol) << "sequence " << i;
    }
  }
  // Evidence: blocks chosen by top-k (not the forced ones) collected scores.
  const auto positive = [](const std::vector<double>& e) {
    return std::count_if(e.begin(), e.end(), [](double x) { return x > 0; });
  };
  EXPECT_GT(positive(evidence[1]), 0);
  EXPECT_GT(positive(evidence[2]), 0);
  // Blocks 0 and the local window are forced, never evidence.
  EXPECT_TRUE(evidence[2].empty() || evidence[2][0] == 0.0);
}

TEST_F(EngineTest, RejectsBadTokenIds) {
  auto engine = MakeEngine(64);
  auto seq = engine->NewSequence().value();
  EXPECT_EQ(engine->Prefill(*seq, std::vector<int32_t>{5, int32_t(config_.vocab_size)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Prefill(*seq, std::vector<int32_t>{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq->num_tokens(), 0);
}

TEST_F(EngineTest, LoadsShardedBf16Checkpoints) {
  testing::TempDir other;
  testing::WriteModel(config_, other.path(), 42, TensorDType::kBF16, 3);
  EngineOptions options;
  options.model_dir = other.path();
  auto engine = Engine::Create(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ(Engine::Create(EngineOptions{.model_dir = "/nonexistent"}).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tome::engine
