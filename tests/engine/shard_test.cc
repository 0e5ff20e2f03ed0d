// Tensor-parallel sharding arithmetic (engine/src/shard.h): which heads, KV groups, MLP
// columns and vocabulary rows each rank owns, the validation errors, checkpoint slices.
#include "shard.h"

#include <cstring>
#include <set>

#include "checkpoint/presets.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tome::engine {
namespace {

using ::testing::HasSubstr;

ModelConfig Sala() { return tools::PresetConfig("sala-9b").value(); }

TEST(ShardTest, OneRankOwnsEverything) {
  const ModelConfig c = Sala();
  const ShardDims d = ComputeShardDims(c, {0, 1}).value();
  EXPECT_EQ(d.lightning_heads, 32);
  EXPECT_EQ(d.q_heads, 32);
  EXPECT_EQ(d.kv_heads, 2);
  EXPECT_EQ(d.intermediate, 16384);
  EXPECT_EQ(d.vocab_rows, 73448);
  EXPECT_EQ(d.vocab_valid, 73448);
  EXPECT_EQ(d.lightning_head0 + d.q_head0 + d.kv_head0 + d.intermediate0 + d.vocab0, 0);
}

TEST(ShardTest, Sala9bOverTwoRanks) {
  const ModelConfig c = Sala();
  const ShardDims r1 = ComputeShardDims(c, {1, 2}).value();
  EXPECT_EQ(r1.lightning_heads, 16);
  EXPECT_EQ(r1.lightning_head0, 16);
  // Rank 1 owns KV group 1 and its 16 query heads (16..31): whole groups.
  EXPECT_EQ(r1.kv_heads, 1);
  EXPECT_EQ(r1.kv_head0, 1);
  EXPECT_EQ(r1.q_heads, 16);
  EXPECT_EQ(r1.q_head0, 16);
  EXPECT_EQ(r1.intermediate, 8192);
  EXPECT_EQ(r1.intermediate0, 8192);
  EXPECT_EQ(r1.vocab_rows, 36724);
  EXPECT_EQ(r1.vocab0, 36724);
  EXPECT_EQ(r1.vocab_valid, 36724);
}

// Every rank's ranges tile [0, total) without overlap, for every world that validates.
TEST(ShardTest, RanksTileEveryDimension) {
  ModelConfig c = tools::PresetConfig("tiny").value();
  c.num_kv_heads = 4;
  c.num_attention_heads = 8;
  c.lightning_heads = 8;
  c.intermediate_size = 128;
  c.vocab_size = 259;
  for (int world : {1, 2, 4}) {
    std::set<int64_t> heads, groups, qheads, cols, vocab;
    for (int r = 0; r < world; ++r) {
      const ShardDims d = ComputeShardDims(c, {r, world}).value();
      for (int64_t i = 0; i < d.lightning_heads; ++i) heads.insert(d.lightning_head0 + i);
      for (int64_t i = 0; i < d.kv_heads; ++i) groups.insert(d.kv_head0 + i);
      for (int64_t i = 0; i < d.q_heads; ++i) {
        qheads.insert(d.q_head0 + i);
        // A query head's group (h / group size) is one of the rank's own groups.
        const int64_t g = (d.q_head0 + i) / (c.num_attention_heads / c.num_kv_heads);
        EXPECT_GE(g, d.kv_head0);
        EXPECT_LT(g, d.kv_head0 + d.kv_heads);
      }
      for (int64_t i = 0; i < d.intermediate; ++i) cols.insert(d.intermediate0 + i);
      for (int64_t i = 0; i < d.vocab_valid; ++i) vocab.insert(d.vocab0 + i);
      EXPECT_EQ(d.vocab_rows, (259 + world - 1) / world);
    }
    EXPECT_EQ(heads.size(), 8u) << world;
    EXPECT_EQ(groups.size(), 4u) << world;
    EXPECT_EQ(qheads.size(), 8u) << world;
    EXPECT_EQ(cols.size(), 128u) << world;
    EXPECT_EQ(vocab.size(), 259u) << world;
    EXPECT_EQ(*vocab.rbegin(), 258) << world;
  }
}

// sala-9b at TP=4: 2 KV groups, so ranks 0-1 share group 0 and ranks 2-3 group 1; each
// attends with 8 of its group's 16 query heads and selects blocks with all 16.
TEST(ShardTest, Sala9bOverFourRanksSplitsEachGroupsHeads) {
  const ModelConfig c = Sala();
  std::set<int64_t> attending;
  for (int r = 0; r < 4; ++r) {
    const ShardDims d = ComputeShardDims(c, {r, 4}).value();
    EXPECT_EQ(d.kv_heads, 1);
    EXPECT_EQ(d.kv_head0, r / 2);
    EXPECT_EQ(d.q_heads, 8);
    EXPECT_EQ(d.q_head0, 8 * r);
    EXPECT_EQ(d.select_heads, 16);
    EXPECT_EQ(d.select_head0, 16 * (r / 2));
    EXPECT_EQ(d.first_of_group, r % 2 == 0);  // one report per group
    EXPECT_EQ(d.lightning_heads, 8);
    EXPECT_EQ(d.intermediate, 4096);
    for (int64_t h = 0; h < d.q_heads; ++h) attending.insert(d.q_head0 + h);
  }
  EXPECT_EQ(attending.size(), 32u);  // every query head attends on exactly one rank
  const ShardDims two = ComputeShardDims(c, {1, 2}).value();
  EXPECT_EQ(two.select_heads, two.q_heads);  // whole groups: selection = attention heads
  EXPECT_EQ(two.select_head0, two.q_head0);
  EXPECT_TRUE(two.first_of_group);
}

TEST(ShardTest, LastRankPadsTheVocabulary) {
  const ModelConfig c = tools::PresetConfig("tiny").value();  // vocab 259
  const ShardDims r0 = ComputeShardDims(c, {0, 2}).value();
  const ShardDims r1 = ComputeShardDims(c, {1, 2}).value();
  EXPECT_EQ(r0.vocab_rows, 130);
  EXPECT_EQ(r0.vocab_valid, 130);
  EXPECT_EQ(r1.vocab0, 130);
  EXPECT_EQ(r1.vocab_valid, 129);
}

TEST(ShardTest, ErrorsNameTheDimension) {
  const ModelConfig c = Sala();
  auto err = [&](int rank, int world) { return ValidateShard(c, {rank, world}); };
  EXPECT_TRUE(err(3, 4).ok());  // 2 ranks per KV group
  EXPECT_THAT(std::string(err(0, 64).message()),
              HasSubstr("tensor_parallel=64 does not divide lightning_nh=32"));
  ModelConfig odd_groups = c;
  odd_groups.num_kv_heads = 4;
  odd_groups.lightning_heads = 48;  // divisible by 6: the group rule is what fails
  EXPECT_THAT(std::string(ValidateShard(odd_groups, {0, 6}).message()),
              HasSubstr("tensor_parallel=6 does not divide num_key_value_heads=4"));
  EXPECT_THAT(std::string(ValidateShard(odd_groups, {0, 6}).message()),
              HasSubstr("whole KV groups, or equal parts"));
  odd_groups.lightning_heads = 64;  // 16 ranks would split a group's 8 query heads 4 ways
  EXPECT_TRUE(ValidateShard(odd_groups, {0, 16}).ok());
  odd_groups.num_attention_heads = 8;  // but not its 2 heads 4 ways
  EXPECT_THAT(std::string(ValidateShard(odd_groups, {0, 16}).message()),
              HasSubstr("splits each group's 2 query heads evenly"));
  EXPECT_THAT(std::string(err(0, 3).message()),
              HasSubstr("tensor_parallel=3 does not divide lightning_nh=32"));
  EXPECT_THAT(std::string(err(0, 0).message()), HasSubstr("at least 1"));
  EXPECT_THAT(std::string(err(2, 2).message()), HasSubstr("rank 2 is outside [0, 2)"));
  ModelConfig odd = c;
  odd.intermediate_size = 16385;
  EXPECT_THAT(std::string(ValidateShard(odd, {0, 2}).message()),
              HasSubstr("does not divide intermediate_size=16385"));
  EXPECT_EQ(err(0, 64).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(err(1, 2).ok());
  EXPECT_FALSE(ComputeShardDims(c, {0, 64}).ok());
}

TEST(ShardTest, CheckpointSlices) {
  std::vector<float> m(4 * 6);
  for (size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(i);
  TensorInfo t;
  t.name = "w";
  t.dtype = TensorDType::kF32;
  t.shape = {4, 6};
  t.data = reinterpret_cast<const uint8_t*>(m.data());
  t.num_bytes = static_cast<int64_t>(m.size() * 4);
  const TensorInfo rows = SliceRows(t, 1, 2);
  EXPECT_EQ(rows.shape, (std::vector<int64_t>{2, 6}));
  EXPECT_EQ(reinterpret_cast<const float*>(rows.data)[0], 6.0f);  // a view, no copy
  EXPECT_EQ(rows.num_bytes, 48);
  std::vector<uint8_t> storage;
  const TensorInfo cols = SliceCols(t, 2, 3, &storage);
  EXPECT_EQ(cols.shape, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(cols.num_bytes, 48);
  std::vector<float> got(12);
  std::memcpy(got.data(), cols.data, 48);
  EXPECT_EQ(got, (std::vector<float>{2, 3, 4, 8, 9, 10, 14, 15, 16, 20, 21, 22}));
}

}  // namespace
}  // namespace tome::engine
