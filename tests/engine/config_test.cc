#include "tome/engine/config.h"

#include <cmath>

#include "checkpoint/presets.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tome/engine/checkpoint.h"

namespace tome::engine {
namespace {

using ::testing::HasSubstr;

TEST(ConfigTest, ReleasedModelShapes) {
  const ModelConfig c = tools::PresetConfig("sala-9b").value();
  EXPECT_EQ(c.num_sparse_layers(), 8);
  EXPECT_EQ(c.num_lightning_layers(), 24);
  EXPECT_EQ(ExpectedTensors(c).size(), 395u);
  EXPECT_EQ(c.NumParameters(), 9477203968);
  EXPECT_NEAR(c.residual_scale(), 1.4 / std::sqrt(32.0), 1e-15);
  EXPECT_DOUBLE_EQ(c.logit_divisor(), 16.0);
  EXPECT_EQ(c.sparse.topk_total(), 96);
}

TEST(ConfigTest, RoundTripsThroughJson) {
  const ModelConfig c = tools::PresetConfig("small").value();
  auto parsed = ModelConfig::FromJson(c.ToJson());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->ToJson(), c.ToJson());
}

TEST(ConfigTest, LightningSlopesFollowAlibi) {
  const auto s32 = LightningSlopes(32);
  EXPECT_NEAR(s32[0], 0.84089642, 1e-8);
  EXPECT_NEAR(s32[3], 0.5, 1e-12);
  EXPECT_NEAR(s32[31], 0.00390625, 1e-12);
  const auto s4 = LightningSlopes(4);
  EXPECT_NEAR(s4[0], 0.25, 1e-12);
  EXPECT_NEAR(s4[3], 1.0 / 256, 1e-12);
  EXPECT_EQ(LightningSlopes(6).size(), 6u);
}

TEST(ConfigTest, NamesTheFirstProblem) {
  auto missing = ModelConfig::FromJson(R"({"hidden_size": 64})");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("intermediate_size"));

  ModelConfig c = tools::PresetConfig("tiny").value();
  std::string text = c.ToJson();
  auto rope = ModelConfig::FromJson(text.replace(text.find("\"attn_use_rope\": false"),
                                                 22, "\"attn_use_rope\": true"));
  EXPECT_EQ(rope.status().code(), absl::StatusCode::kUnimplemented);

  EXPECT_EQ(ModelConfig::FromJson("not json").status().code(),
            absl::StatusCode::kInvalidArgument);
  c.mixer_types.pop_back();
  EXPECT_THAT(std::string(c.Validate().message()), HasSubstr("mixer_types"));
}

TEST(ConfigTest, RejectsSparseConfigsWithUnforcedEarlyBlocks) {
  ModelConfig c = tools::PresetConfig("tiny").value();
  c.sparse.window_size = 0;  // no local blocks: block 1 unforced before any K2 exists
  c.sparse.init_blocks = 0;
  EXPECT_EQ(c.Validate().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tome::engine
