// Tensor parallelism on CUDA (needs 2 GPUs and an NCCL build; skips otherwise):
//   * the NCCL collectives of two CudaBackend ranks (one thread each);
//   * the whole tiny model at TP=2 against TP=1 on the GPU and against the CPU (fp32);
//   * the 9.48B model (sala-9b shapes, random bf16 weights; 8192 tokens so that the sparse
//     layers select blocks) at TP=2 (and TP=4 on 4 GPUs) against TP=1, layer by layer (its
//     tolerances below).
// Tiny-model logit tolerances are cuda_engine_test's for the whole model: norm-wise relative error
// ‖tp2 − tp1‖ / ‖tp1‖ ≤ 2e-2 over all positions (bf16 activations, the TP ranks round each
// partial o_proj / down_proj sum to bf16 before the all-reduce), ≤ 0.15 at any one position.
#include <cstdlib>
#include <thread>

#include "checkpoint/presets.h"
#include "cuda/cuda_backend.h"
#include "gpu_test_util.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_models.h"
#include "tome/engine/engine.h"

namespace tome::engine {
namespace {

using testing::ExpectClose;

constexpr double kLogitTol = 2e-2;
constexpr double kPositionTol = 0.15;

int GpuCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

double WorstPosition(const std::vector<float>& got, const std::vector<float>& want, int64_t V) {
  double worst = 0;
  for (size_t t = 0; t * V < want.size(); ++t) {
    std::vector<float> a(got.begin() + t * V, got.begin() + (t + 1) * V);
    std::vector<float> b(want.begin() + t * V, want.begin() + (t + 1) * V);
    worst = std::max(worst, testing::Measure(a, b).rel);
  }
  return worst;
}

// Two ranks' AllReduceSum and AllGatherCols (several rows: the re-layout path; one row:
// gathered in place), bf16 and fp32, against the sums and concatenations on the host.
TEST(TpCudaTest, NcclCollectives) {
  if (GpuCount() < 2) GTEST_SKIP() << "needs 2 GPUs";
  auto group = NewNcclGroup(0, 2);
  if (group.status().code() == absl::StatusCode::kUnimplemented) GTEST_SKIP() << group.status();
  ASSERT_TRUE(group.ok()) << group.status();
  const int64_t rows = 37, c = 24;
  std::vector<std::vector<float>> inputs = {testing::RandomValues(rows * 2 * c, 1),
                                            testing::RandomValues(rows * 2 * c, 2)};
  std::vector<std::vector<float>> reduced(2), gathered(2), row(2);
  std::vector<absl::Status> status(2);
  auto rank = [&](int r) {
    auto made = NewCudaBackend(r, *group, r);
    if (!made.ok()) {
      status[r] = made.status();
      return;
    }
    Backend& b = **made;
    for (DType dt : {DType::kBF16, DType::kF32}) {
      const int64_t es = DTypeSize(dt);
      Buffer xb = b.Allocate(rows * 2 * c * es).value(), fb = b.Allocate(rows * 2 * c * es).value();
      const Tensor x = xb.View(dt, rows, 2 * c), full = fb.View(dt, rows, 2 * c);
      std::vector<uint16_t> b16(inputs[r].size());
      for (size_t i = 0; i < b16.size(); ++i) b16[i] = FloatToBFloat16(inputs[r][i]);
      b.CopyFromHost(x, dt == DType::kBF16 ? static_cast<const void*>(b16.data())
                                            : static_cast<const void*>(inputs[r].data()));
      const Tensor local = Tensor{x.data, dt, rows, c, c};  // first rows·c elements, dense
      b.AllGatherCols(local, full);
      const Tensor one_local = Tensor{x.data, dt, 1, c, c}, one_full = fb.View(dt, 1, 2 * c);
      std::vector<float> host(rows * 2 * c);
      auto get = [&](const Tensor& t) {
        std::vector<float> out(t.num_elements());
        if (dt == DType::kF32) {
          b.CopyToHost(t, out.data());
        } else {
          std::vector<uint16_t> raw(out.size());
          b.CopyToHost(t, raw.data());
          for (size_t i = 0; i < raw.size(); ++i) out[i] = BFloat16ToFloat(raw[i]);
        }
        return out;
      };
      if (dt == DType::kF32) gathered[r] = get(full);
      b.AllGatherCols(one_local, one_full);
      if (dt == DType::kF32) row[r] = get(one_full);
      b.AllReduceSum(x);
      std::vector<float> sum = get(x);
      if (dt == DType::kF32) reduced[r] = sum;
      status[r] = b.Synchronize();
      if (!status[r].ok()) return;
    }
  };
  std::thread t0(rank, 0), t1(rank, 1);
  t0.join();
  t1.join();
  ASSERT_TRUE(status[0].ok()) << status[0];
  ASSERT_TRUE(status[1].ok()) << status[1];
  for (int r = 0; r < 2; ++r) {
    // The local tensors were each rank's first rows·c elements, read densely as [rows, c].
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < 2 * c; ++j) {
        const int src = static_cast<int>(j / c);
        EXPECT_EQ(gathered[r][i * 2 * c + j], inputs[src][i * c + j % c]) << i << "," << j;
      }
    }
    for (int64_t j = 0; j < 2 * c; ++j) EXPECT_EQ(row[r][j], inputs[j / c][j % c]);
    for (int64_t i = 0; i < rows * 2 * c; ++i) {
      EXPECT_NEAR(reduced[r][i], inputs[0][i] + inputs[1][i], 1e-5) << i;
    }
  }
}

std::unique_ptr<Engine> MakeEngine(EngineOptions options) {
  auto engine = Engine::Create(options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(engine).value() : nullptr;
}

TEST(TpCudaTest, TinyModelTp2MatchesTp1AndCpu) {
  if (GpuCount() < 2) GTEST_SKIP() << "needs 2 GPUs";
  testing::TempDir dir;
  const ModelConfig config = testing::TinyConfig();
  testing::WriteModel(config, dir.path(), 42, TensorDType::kBF16);
  EngineOptions options;
  options.model_dir = dir.path();
  options.max_chunk_tokens = 256;
  auto cpu = MakeEngine(options);
  options.device = DeviceKind::kCuda;
  auto tp1 = MakeEngine(options);
  options.tensor_parallel = 2;
  auto tp2 = Engine::Create(options);
  if (tp2.status().code() == absl::StatusCode::kUnimplemented) GTEST_SKIP() << tp2.status();
  ASSERT_TRUE(cpu && tp1 && tp2.ok()) << tp2.status();
  const auto tokens = testing::RandomTokens(700, config.vocab_size, 1);
  PrefillOptions all;
  all.all_logits = true;
  auto s0 = cpu->NewSequence().value(), s1 = tp1->NewSequence().value(),
       s2 = (*tp2)->NewSequence().value();
  const auto ref = cpu->Prefill(*s0, tokens, all).value();
  const auto one = tp1->Prefill(*s1, tokens, all).value();
  const auto two = (*tp2)->Prefill(*s2, tokens, all).value();
  ExpectClose(two, one, kLogitTol, "tiny: TP=2 vs TP=1 logits, 700 positions");
  ExpectClose(two, ref, kLogitTol, "tiny: TP=2 vs CPU fp32 logits, 700 positions");
  const double worst = WorstPosition(two, one, config.vocab_size);
  std::printf("    tiny: worst position TP=2 vs TP=1 rel %.3g\n", worst);
  EXPECT_LE(worst, kPositionTol);
  for (int i = 0; i < 20; ++i) {
    const int32_t t = tokens[i];
    const auto a = tp1->Prefill(*s1, absl::MakeConstSpan(&t, 1)).value();
    const auto b = (*tp2)->Prefill(*s2, absl::MakeConstSpan(&t, 1)).value();
    EXPECT_LE(testing::Measure(b, a).rel, kPositionTol) << "decode step " << i;
  }
  // A TP sequence freed on this thread frees on each rank's device and restores ours (the
  // one-GPU engine driven from here launches on the current device).
  s2.reset();
  int device = -1;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  EXPECT_EQ(device, 0);
  const auto again = tp1->Prefill(*s1, absl::MakeConstSpan(tokens.data(), 1));
  EXPECT_TRUE(again.ok()) << again.status();
}

// Tensor parallelism on the real shapes: 16 query heads and one KV group per rank.
//
// bf16 rounding compounds over 32 layers of a random-weight model, so the whole-model
// tolerance cannot be the tiny model's: on 2 x H200 the hidden states drift apart smoothly,
// rel 0.0041 after layer 0, 0.0081 after layer 1, then +0.001..0.002 per layer to 0.052 after
// layer 31 (logits 0.057). The CPU ranks show the sharding itself exact (rel 2e-7 in fp32,
// tensor_parallel_test); here a broken collective or rank would show as a jump: the first
// layer and every layer's increase must stay under kStepTol, everything under kDeepTol
// (unrelated outputs are ~1.4 apart).
constexpr double kStepTol = 1e-2;
constexpr double kDeepTol = 0.1;

TEST(TpCudaTest, Sala9bTp2MatchesTp1) {
  if (GpuCount() < 2) GTEST_SKIP() << "needs 2 GPUs";
  const int64_t n = std::getenv("TOME_TP_TEST_TOKENS") ? std::atoll(std::getenv("TOME_TP_TEST_TOKENS")) : 8192;
  EngineOptions options;
  options.device = DeviceKind::kCuda;
  options.random_weights_seed = 1;
  options.config_override = tools::PresetConfig("sala-9b").value();
  options.max_chunk_tokens = 4096;
  const int64_t V = options.config_override->vocab_size;
  const auto tokens = testing::RandomTokens(n, V, 3);
  std::vector<int> worlds = {1, 2};
  if (GpuCount() >= 4) worlds.push_back(4);  // 2 ranks per KV group (shard.h)
  std::vector<float> logits[5];
  std::vector<std::vector<float>> hidden[5], decoded[5];
  for (int tp : worlds) {  // one engine at a time: all fit, but the GPU memory is shared
    options.tensor_parallel = tp;
    auto engine = Engine::Create(options);
    if (tp == 2 && engine.status().code() == absl::StatusCode::kUnimplemented) {
      GTEST_SKIP() << engine.status();
    }
    ASSERT_TRUE(engine.ok()) << engine.status();
    std::printf("    sala-9b TP=%d: engine ready, prefilling %lld tokens\n", tp,
                static_cast<long long>(n));
    std::fflush(stdout);  // a hang shows how far it got
    auto seq = (*engine)->NewSequence().value();
    PrefillOptions prefill;
    prefill.capture_hidden = &hidden[tp];
    prefill.on_progress = [tp](int64_t done) {
      std::printf("    sala-9b TP=%d: %lld tokens done\n", tp, static_cast<long long>(done));
      std::fflush(stdout);
      return true;
    };
    auto out = (*engine)->Prefill(*seq, tokens, prefill);
    ASSERT_TRUE(out.ok()) << out.status();
    logits[tp] = *std::move(out);
    for (int i = 0; i < 8; ++i) {
      const int32_t t = tokens[i];
      auto step = (*engine)->Prefill(*seq, absl::MakeConstSpan(&t, 1));
      ASSERT_TRUE(step.ok()) << step.status();
      decoded[tp].push_back(*step);
      std::printf("    sala-9b TP=%d: decode step %d done\n", tp, i);
      std::fflush(stdout);
    }
    std::printf("    sala-9b TP=%d: releasing the engine\n", tp);
    std::fflush(stdout);
  }
  const ModelConfig& c = *options.config_override;
  ASSERT_EQ(hidden[1].size(), static_cast<size_t>(c.num_layers));
  for (size_t k = 1; k < worlds.size(); ++k) {
    const int tp = worlds[k];
    ASSERT_EQ(hidden[tp].size(), hidden[1].size());
    std::printf("    sala-9b: TP=%d vs TP=1 hidden states after each layer (rel):", tp);
    double before = 0;
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const double rel = testing::Measure(hidden[tp][l], hidden[1][l]).rel;
      std::printf("%s %.2g", l % 8 == 0 ? "\n     " : "", rel);
      EXPECT_LE(rel - before, kStepTol) << "TP=" << tp << " layer " << l;
      EXPECT_LE(rel, kDeepTol) << "TP=" << tp << " layer " << l;
      before = rel;
    }
    std::printf("\n");
    const std::string what = "sala-9b: TP=" + std::to_string(tp) + " vs TP=1 ";
    ExpectClose(logits[tp], logits[1], kDeepTol, what + "logits after " + std::to_string(n));
    for (size_t i = 0; i < decoded[1].size(); ++i) {
      ExpectClose(decoded[tp][i], decoded[1][i], kDeepTol, what + "decode step " + std::to_string(i));
    }
  }
}

}  // namespace
}  // namespace tome::engine
