#include "tome/engine/safetensors.h"

#include <cmath>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_models.h"
#include "tome/engine/checkpoint.h"

namespace tome::engine {
namespace {

using ::testing::HasSubstr;

TEST(SafetensorsTest, RoundTripsEveryDtypeAndSharding) {
  testing::TempDir dir;
  std::vector<float> a = {1.0f, -2.5f, 3.25f, 1e-3f, 65504.0f, -0.0f};
  std::vector<float> b = {0.5f, 0.25f};
  std::vector<TensorToWrite> tensors = {{"a", {2, 3}, a.data()}, {"b", {2}, b.data()}};
  for (TensorDType dtype : {TensorDType::kF32, TensorDType::kBF16, TensorDType::kF16}) {
    for (int shards : {1, 2}) {
      const std::string sub = dir.Sub(std::string(TensorDTypeName(dtype)) + std::to_string(shards));
      ASSERT_TRUE(WriteSafetensorsCheckpoint(sub, tensors, dtype, shards).ok());
      auto ckpt = SafetensorsCheckpoint::Open(sub);
      ASSERT_TRUE(ckpt.ok()) << ckpt.status();
      auto info = (*ckpt)->Find("a");
      ASSERT_TRUE(info.ok());
      EXPECT_EQ((*info)->shape, (std::vector<int64_t>{2, 3}));
      std::vector<float> out(6);
      SafetensorsCheckpoint::ToFloat32(**info, out.data());
      const double tol = dtype == TensorDType::kF32 ? 0 : dtype == TensorDType::kBF16 ? 8e-3 : 1e-3;
      for (int i = 0; i < 6; ++i) EXPECT_NEAR(out[i], a[i], tol * std::abs(a[i]) + 1e-7);
    }
  }
}

TEST(SafetensorsTest, RejectsCorruptFiles) {
  testing::TempDir dir;
  const std::string path = dir.Sub("bad.safetensors");
  auto write = [&](const std::string& bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  };
  write("abc");
  EXPECT_EQ(SafetensorsCheckpoint::OpenFile(path).status().code(), absl::StatusCode::kDataLoss);
  std::string header = R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  std::string len(8, '\0');
  len[0] = static_cast<char>(header.size());
  write(len + header + std::string(8, '\0'));  // 8 bytes of data, header claims 16
  auto st = SafetensorsCheckpoint::OpenFile(path).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(st.message()), HasSubstr("outside the file"));
  len[0] = 100;  // header longer than the file
  write(len + header);
  EXPECT_EQ(SafetensorsCheckpoint::OpenFile(path).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(SafetensorsCheckpoint::Open(dir.Sub("nothing")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, ValidationNamesTheFirstMismatch) {
  testing::TempDir dir;
  ModelConfig config = testing::TinyConfig();
  testing::WriteModel(config, dir.path(), 1);
  auto ckpt = SafetensorsCheckpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok());
  EXPECT_TRUE(ValidateCheckpoint(config, **ckpt).ok());
  ModelConfig wider = config;
  wider.intermediate_size = 256;
  EXPECT_THAT(std::string(ValidateCheckpoint(wider, **ckpt).message()),
              HasSubstr("model.layers.0.mlp.gate_proj.weight has shape [128, 64]"));
  ModelConfig swapped = config;
  swapped.mixer_types[1] = MixerType::kSparse;
  EXPECT_THAT(std::string(ValidateCheckpoint(swapped, **ckpt).message()),
              HasSubstr("model.layers.1.self_attn"));
}

}  // namespace
}  // namespace tome::engine
