// Tensor parallelism on the CPU: the sharded forward pass of 2 ranks (in-process
// all-reduce, local_collective.h) against one rank, through the public Engine API. Both run
// in fp32, so the only differences are the order of the o_proj / down_proj sums (split
// between ranks): logits must agree to 1e-5 norm-wise (‖tp2 − tp1‖ / ‖tp1‖, the statistic of
// tests/kernels/backend_ops_test) with the same argmax everywhere.
#include <algorithm>
#include <cmath>

#include "backend.h"
#include "gmock/gmock.h"
#include "local_collective.h"
#include "rank_pool.h"
#include "gtest/gtest.h"
#include "tests/testutil/map_store.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_models.h"
#include "tome/engine/engine.h"

namespace tome::engine {
namespace {

constexpr double kTol = 1e-5;

double NormRel(const std::vector<float>& got, const std::vector<float>& want) {
  double d2 = 0, r2 = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    d2 += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    r2 += double(want[i]) * want[i];
  }
  return std::sqrt(d2) / std::max(std::sqrt(r2), 1e-30);
}

void ExpectSameArgmax(const std::vector<float>& got, const std::vector<float>& want, int64_t V) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t t = 0; t * V < want.size(); ++t) {
    auto a = std::max_element(got.begin() + t * V, got.begin() + (t + 1) * V) - got.begin();
    auto b = std::max_element(want.begin() + t * V, want.begin() + (t + 1) * V) - want.begin();
    EXPECT_EQ(a, b) << "position " << t;
  }
}

class TensorParallelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::TinyConfig();  // 4 heads, 2 KV groups, F 128, vocab 259 (odd)
    testing::WriteModel(config_, dir_.path(), 42);
  }
  std::unique_ptr<Engine> Make(int tp, int64_t chunk) {
    EngineOptions options;
    options.model_dir = dir_.path();
    options.max_chunk_tokens = chunk;
    options.tensor_parallel = tp;
    auto engine = Engine::Create(options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? std::move(engine).value() : nullptr;
  }
  testing::TempDir dir_;
  ModelConfig config_;
};

// TP=2: each rank owns one of the tiny model's 2 KV groups; TP=4: two ranks share a group,
// each attending with one of its 2 query heads and selecting with both (shard.h).
class TensorParallelWorldTest : public TensorParallelTest,
                                public ::testing::WithParamInterface<int> {};

INSTANTIATE_TEST_SUITE_P(Ranks, TensorParallelWorldTest, ::testing::Values(2, 4));

TEST_P(TensorParallelWorldTest, PrefillLogitsAndHiddenStatesMatchOneRank) {
  auto one = Make(1, 4096), two = Make(GetParam(), 128);  // TP chunks 700 tokens 6 ways
  ASSERT_TRUE(one && two);
  const auto tokens = testing::RandomTokens(700, config_.vocab_size, 1);
  PrefillOptions o1, o2;
  o1.all_logits = o2.all_logits = true;
  std::vector<std::vector<float>> h1, h2;
  o1.capture_hidden = &h1;
  o2.capture_hidden = &h2;
  auto s1 = one->NewSequence().value(), s2 = two->NewSequence().value();
  const auto want = one->Prefill(*s1, tokens, o1).value();
  auto got = two->Prefill(*s2, tokens, o2);
  ASSERT_TRUE(got.ok()) << got.status();
  const double rel = NormRel(*got, want);
  std::printf("    TP=%d vs TP=1, 700 positions: rel %.3g\n", GetParam(), rel);
  EXPECT_LE(rel, kTol);
  ExpectSameArgmax(*got, want, config_.vocab_size);
  ASSERT_EQ(h1.size(), h2.size());
  for (size_t l = 0; l < h1.size(); ++l) EXPECT_LE(NormRel(h2[l], h1[l]), kTol) << "layer " << l;
  EXPECT_EQ(s2->num_tokens(), 700);
  EXPECT_GT(s2->OwnedBytes(), 0);
}

TEST_P(TensorParallelWorldTest, BatchedDecodeForkAndEvidenceMatchOneRank) {
  config_.sparse.topk = 4;  // dynamic slots (the tiny preset's 3 blocks are all forced)
  testing::WriteModel(config_, dir_.path(), 42);
  auto one = Make(1, 256), two = Make(GetParam(), 256);
  ASSERT_TRUE(one && two);
  const auto a = testing::RandomTokens(520, config_.vocab_size, 7);
  const auto b = testing::RandomTokens(300, config_.vocab_size, 8);
  auto a1 = one->NewSequence().value(), b1 = one->NewSequence().value();
  auto a2 = two->NewSequence().value(), b2 = two->NewSequence().value();
  ASSERT_TRUE(one->Prefill(*a1, a).ok() && one->Prefill(*b1, b).ok());
  ASSERT_TRUE(two->Prefill(*a2, a).ok() && two->Prefill(*b2, b).ok());
  auto f1 = one->Fork(*a1).value();
  auto f2 = two->Fork(*a2).value();
  std::vector<double> e1a, e1b, e2a, e2b;
  for (int step = 0; step < 6; ++step) {
    const std::vector<int32_t> toks = {a[step] , b[step], a[step + 1]};
    std::vector<Sequence*> q1 = {a1.get(), b1.get(), f1.get()};
    std::vector<Sequence*> q2 = {a2.get(), b2.get(), f2.get()};
    std::vector<std::vector<double>*> ev1 = {&e1a, &e1b, nullptr}, ev2 = {&e2a, &e2b, nullptr};
    auto l1 = one->DecodeBatch(q1, toks, ev1);
    auto l2 = two->DecodeBatch(q2, toks, ev2);
    ASSERT_TRUE(l1.ok() && l2.ok()) << l2.status();
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_LE(NormRel((*l2)[i], (*l1)[i]), kTol) << "step " << step << " sequence " << i;
      ExpectSameArgmax((*l2)[i], (*l1)[i], config_.vocab_size);
    }
  }
  // Evidence: the pooled scores of dynamically selected blocks, summed over the ranks' KV
  // groups (each group counted once, also when two ranks share it), equals one rank's.
  ASSERT_EQ(e1a.size(), e2a.size());
  ASSERT_FALSE(e1a.empty());
  for (size_t i = 0; i < e1a.size(); ++i) EXPECT_NEAR(e2a[i], e1a[i], 1e-4 * (1 + std::abs(e1a[i])));
  ASSERT_EQ(e1b.size(), e2b.size());
}

// States saved by a TP engine load into a TP=1 engine and the other way round (one record
// layout), incrementally saved in two parts, and both continue with the same logits.
TEST_P(TensorParallelWorldTest, SavedStatesMoveBetweenOneRankAndSeveral) {
  config_.sparse.topk = 4;
  testing::WriteModel(config_, dir_.path(), 42);
  auto one = Make(1, 256), tp = Make(GetParam(), 256);
  ASSERT_TRUE(one && tp);
  const auto tokens = testing::RandomTokens(700, config_.vocab_size, 11);
  const auto head = absl::MakeConstSpan(tokens).first(300);
  const auto tail = absl::MakeConstSpan(tokens).subspan(300);
  auto save_in_two_parts = [&](Engine& engine, testing::MapStore& store) {
    auto seq = engine.NewSequence().value();
    EXPECT_TRUE(engine.Prefill(*seq, head).ok());
    EXPECT_TRUE(engine.SaveState(*seq, 0, store).ok());
    EXPECT_TRUE(engine.Prefill(*seq, tail).ok());
    EXPECT_TRUE(engine.SaveState(*seq, 300, store).ok());  // only what came after 300
  };
  testing::MapStore from_one(true), from_tp(true);
  save_in_two_parts(*one, from_one);
  save_in_two_parts(*tp, from_tp);
  // Decode after loading: TP=1's state in the TP engine, the TP state in TP=1, against TP=1
  // continuing its own state.
  auto want_seq = one->LoadState(700, from_one).value();
  auto tp_loads_one = tp->LoadState(700, from_one);
  auto one_loads_tp = one->LoadState(700, from_tp);
  ASSERT_TRUE(tp_loads_one.ok()) << tp_loads_one.status();
  ASSERT_TRUE(one_loads_tp.ok()) << one_loads_tp.status();
  for (int step = 0; step < 4; ++step) {
    const int32_t t = tokens[step];
    const auto want = one->Prefill(*want_seq, absl::MakeConstSpan(&t, 1)).value();
    const auto a = tp->Prefill(**tp_loads_one, absl::MakeConstSpan(&t, 1)).value();
    const auto b = one->Prefill(**one_loads_tp, absl::MakeConstSpan(&t, 1)).value();
    EXPECT_LE(NormRel(a, want), kTol) << "TP engine on TP=1's state, step " << step;
    EXPECT_LE(NormRel(b, want), kTol) << "TP=1 engine on the TP state, step " << step;
  }
}

// Storage-backed attention with the model split: each rank fetches its own groups' blocks
// (or a shared group's, with 4 ranks) into its own device's tier of one block cache whose
// budget (two blocks per device, no host tier) makes it evict and refetch constantly. The
// logits equal one rank's with the whole state loaded; saving writes the absent blocks.
TEST_P(TensorParallelWorldTest, OnDemandSequencesMatchOneRankResident) {
  config_.sparse.topk = 4;
  testing::WriteModel(config_, dir_.path(), 42);
  auto one = Make(1, 64), tp = Make(GetParam(), 64);
  ASSERT_TRUE(one && tp);
  const auto tokens = testing::RandomTokens(1000, config_.vocab_size, 12);
  const auto head = absl::MakeConstSpan(tokens).first(900);
  const auto more = absl::MakeConstSpan(tokens).subspan(900, 90);
  auto store = std::make_shared<testing::MapStore>(/*keep_longest_only=*/true);
  {
    auto seq = one->NewSequence().value();
    ASSERT_TRUE(one->Prefill(*seq, head).ok());
    ASSERT_TRUE(one->SaveState(*seq, 0, *store).ok());
  }
  const int64_t block_bytes = 2 * config_.sparse.block_size * config_.head_dim * 4;
  auto cache = tp->NewBlockCache(2 * block_bytes, 0);
  auto lazy = tp->LoadStateOnDemand(900, store, cache, "doc@1");
  ASSERT_TRUE(lazy.ok()) << lazy.status();
  EXPECT_TRUE((*lazy)->on_demand());
  auto resident = one->LoadState(900, *store).value();
  PrefillOptions all;
  all.all_logits = true;
  const auto want = one->Prefill(*resident, more, all).value();
  const auto got = tp->Prefill(**lazy, more, all);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_LE(NormRel(*got, want), kTol);
  ExpectSameArgmax(*got, want, config_.vocab_size);
  for (int step = 0; step < 4; ++step) {
    const int32_t t = tokens[990 + step];
    Sequence* a[] = {resident.get()};
    Sequence* b[] = {lazy->get()};
    const auto w = one->DecodeBatch(a, absl::MakeConstSpan(&t, 1)).value();
    const auto g = tp->DecodeBatch(b, absl::MakeConstSpan(&t, 1));
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_LE(NormRel((*g)[0], w[0]), kTol) << "decode step " << step;
  }
  const BlockCacheStats stats = cache->stats();
  EXPECT_GT(stats.source_reads, 0);
  EXPECT_GT(stats.device_evictions, 0);
  EXPECT_LE(stats.device_bytes, GetParam() * 2 * block_bytes);  // two blocks per device

  // Saving everything from the split on-demand sequence writes the blocks still in storage:
  // one rank loads the copy whole and continues exactly as the resident sequence does.
  testing::MapStore copy(true);
  ASSERT_TRUE(tp->SaveState(**lazy, 0, copy).ok());
  auto reloaded = one->LoadState(994, copy);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  const int32_t next = tokens[994];
  EXPECT_LE(NormRel(one->Prefill(**reloaded, absl::MakeConstSpan(&next, 1)).value(),
                    one->Prefill(*resident, absl::MakeConstSpan(&next, 1)).value()),
            kTol);

  // A split sequence in memory lets its stored blocks go (storage-backed ingestion) and
  // continues the same.
  auto moved = tp->LoadState(900, *store).value();
  EXPECT_FALSE(moved->on_demand());
  ASSERT_TRUE(
      tp->MoveBlocksToStorage(*moved, store, tp->NewBlockCache(2 * block_bytes, 0), "doc@3").ok());
  EXPECT_TRUE(moved->on_demand());
  const auto after_move = tp->Prefill(*moved, more, all);
  ASSERT_TRUE(after_move.ok()) << after_move.status();
  EXPECT_LE(NormRel(*after_move, want), kTol);

  // A block lost from the store fails the forward pass on every rank, not the process.
  auto again = tp->LoadStateOnDemand(900, store, tp->NewBlockCache(2 * block_bytes, 0), "doc@2");
  ASSERT_TRUE(again.ok()) << again.status();
  store->records_.clear();
  EXPECT_EQ(tp->Prefill(**again, more).status().code(), absl::StatusCode::kNotFound);
}

TEST(TensorParallelRandomTest, RandomWeightsShardTheSameModel) {
  EngineOptions options;
  options.random_weights_seed = 3;
  options.config_override = testing::TinyConfig();
  options.max_chunk_tokens = 256;
  auto one = Engine::Create(options);
  options.tensor_parallel = 2;
  auto two = Engine::Create(options);
  ASSERT_TRUE(one.ok() && two.ok()) << two.status();
  const auto tokens = testing::RandomTokens(300, options.config_override->vocab_size, 4);
  auto s1 = (*one)->NewSequence().value(), s2 = (*two)->NewSequence().value();
  const auto want = (*one)->Prefill(*s1, tokens).value();
  const auto got = (*two)->Prefill(*s2, tokens).value();
  EXPECT_LE(NormRel(got, want), kTol);
  ExpectSameArgmax(got, want, options.config_override->vocab_size);
  // Greedy generation runs through the TP engine too.
  GenerateOptions g;
  g.max_new_tokens = 5;
  auto r1 = (*one)->Generate(*s1, want, g);
  auto r2 = (*two)->Generate(*s2, got, g);
  ASSERT_TRUE(r1.ok() && r2.ok()) << r2.status();
  EXPECT_EQ(r1->tokens, r2->tokens);
}

// The structure of the 9.48B model (tools/checkpoint presets "sala-9b": 32 layers in its
// S/L pattern, 16 query heads per KV group, 2 KV groups, 32 Lightning heads, an odd
// vocabulary) at small widths, random weights generated on the backend (the path of
// tome_bench --random_weights), several chunks, and a dense threshold short enough that the
// later chunks take the sparse path with dynamic block selection. Every rank must issue the
// same collectives in the same order: a divergence deadlocks or mismatches here.
class Sala9bStructureTest : public ::testing::TestWithParam<int> {};

INSTANTIATE_TEST_SUITE_P(Ranks, Sala9bStructureTest, ::testing::Values(2, 4));

TEST_P(Sala9bStructureTest, SeveralChunksSparsePath) {
  ModelConfig c = testing::TinyConfig();
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_attention_heads = 32;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.lightning_heads = 32;
  c.lightning_head_dim = 16;
  c.vocab_size = 1031;
  c.mixer_types.clear();
  for (char m : std::string("SLLLLLLLLSLLLLLLSSLLLLSLLLLLLSSS")) {
    c.mixer_types.push_back(m == 'S' ? MixerType::kSparse : MixerType::kLightning);
  }
  c.num_layers = static_cast<int64_t>(c.mixer_types.size());
  c.dim_model_base = 64;
  c.sparse = {32, 16, 1, 64, 256, 4, 1024};  // selection from position 512, dense below 1024
  ASSERT_TRUE(c.Validate().ok());
  EngineOptions options;
  options.random_weights_seed = 1;
  options.config_override = c;
  options.max_chunk_tokens = 512;
  auto one = Engine::Create(options);
  options.tensor_parallel = GetParam();  // 4: two ranks per KV group, 8 query heads each
  auto two = Engine::Create(options);
  ASSERT_TRUE(one.ok() && two.ok()) << two.status();
  const auto tokens = testing::RandomTokens(1800, c.vocab_size, 3);  // 4 chunks, last partial
  auto s1 = (*one)->NewSequence().value(), s2 = (*two)->NewSequence().value();
  const auto want = (*one)->Prefill(*s1, tokens).value();
  auto got = (*two)->Prefill(*s2, tokens);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_LE(NormRel(*got, want), kTol);
  ExpectSameArgmax(*got, want, c.vocab_size);
  for (int i = 0; i < 4; ++i) {  // decode steps: one row, the sparse layers select
    const int32_t t = tokens[i];
    const auto a = (*one)->Prefill(*s1, absl::MakeConstSpan(&t, 1)).value();
    auto b = (*two)->Prefill(*s2, absl::MakeConstSpan(&t, 1));
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_LE(NormRel(*b, a), kTol) << "decode step " << i;
  }
}

// A rank that fails before a collective must not leave the others waiting in it forever:
// the pool's error handler (what ParallelModel installs) aborts the group's collectives,
// and the waiting rank's collective returns with an Aborted error.
TEST(TensorParallelAbortTest, FailingRankReleasesTheOthers) {
  std::vector<std::unique_ptr<Backend>> cpus;
  for (int r = 0; r < 2; ++r) cpus.push_back(NewCpuBackend(1));
  std::vector<std::unique_ptr<Backend>> ranks = NewLocalCollectiveGroup(std::move(cpus));
  RankPool pool(2);
  pool.SetErrorHandler(
      [&](int) {
        for (auto& b : ranks) b->AbortCollectives();
      },
      std::chrono::milliseconds(50));
  std::vector<Buffer> buffers(2);
  const absl::Status status = pool.Run([&](int r) -> absl::Status {
    if (r == 1) return absl::InternalError("rank 1 failed before its all-reduce");
    buffers[r] = ranks[r]->Allocate(4 * sizeof(float)).value();
    const Tensor x = buffers[r].View(DType::kF32, 1, 4);
    ranks[r]->Fill(x, 1.0f);
    ranks[r]->AllReduceSum(x);  // waits for rank 1 until the abort
    return ranks[r]->Synchronize();
  });
  // Rank 0's collective was aborted (the lowest failing rank's error is returned).
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted) << status;
  // Later collectives fail at once.
  const absl::Status again = pool.Run([&](int r) -> absl::Status {
    if (!buffers[r].data()) buffers[r] = ranks[r]->Allocate(4 * sizeof(float)).value();
    ranks[r]->AllReduceSum(buffers[r].View(DType::kF32, 1, 4));
    return ranks[r]->Synchronize();
  });
  EXPECT_EQ(again.code(), absl::StatusCode::kAborted) << again;
  buffers.clear();
}

TEST_F(TensorParallelTest, ClearErrors) {
  EngineOptions options;
  options.model_dir = dir_.path();
  options.tensor_parallel = 8;  // tiny has 4 Lightning heads and 2 KV groups of 2 heads
  auto eight = Engine::Create(options);
  ASSERT_FALSE(eight.ok());
  EXPECT_EQ(eight.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(eight.status().message()),
              ::testing::HasSubstr("tensor_parallel=8 does not divide lightning_nh=4"));
  options.tensor_parallel = 0;
  EXPECT_FALSE(Engine::Create(options).ok());

  auto two = Make(2, 128);
  ASSERT_TRUE(two);
  auto seq = two->NewSequence().value();
  const auto tokens = testing::RandomTokens(50, config_.vocab_size, 2);
  ASSERT_TRUE(two->Prefill(*seq, tokens).ok());
  std::vector<std::vector<int32_t>> selection;
  PrefillOptions capture;
  capture.capture_selection = &selection;
  EXPECT_EQ(two->Prefill(*seq, tokens, capture).status().code(),
            absl::StatusCode::kUnimplemented);
  const std::vector<int32_t> bad = {1, 5000};
  EXPECT_EQ(two->Prefill(*seq, bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seq->num_tokens(), 50);  // nothing ran
}

}  // namespace
}  // namespace tome::engine
