// The whole model on the CUDA backend against the CPU engine, on a tiny random config whose
// sparse layers select 3 of up to 16 blocks: bf16 checkpoint (both engines use the same
// weights), chunked prefill, decode, greedy generation, state save/load, random weights.
#include <map>

#include "gpu_test_util.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/test_models.h"
#include "tome/engine/engine.h"

namespace tome::engine {
namespace {

using testing::ExpectClose;

// Logits of a bf16 forward pass (4 layers, bf16 stores between ops) against fp32: norm-wise
// over all positions, and per position (one position can move further when a near-tie block
// selection differs between the bf16 and fp32 block scores).
constexpr double kLogitTol = 2e-2;
constexpr double kPositionTol = 0.15;

class CudaEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::TinyConfig();
    testing::WriteModel(config_, dir_.path(), 42, TensorDType::kBF16);
  }

  std::unique_ptr<Engine> Make(DeviceKind device, int64_t chunk) {
    EngineOptions options;
    options.model_dir = dir_.path();
    options.device = device;
    options.max_chunk_tokens = chunk;
    auto engine = Engine::Create(options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? std::move(engine).value() : nullptr;
  }

  testing::TempDir dir_;
  ModelConfig config_;
};

std::vector<float> Slice(const std::vector<float>& v, int64_t row, int64_t width) {
  return std::vector<float>(v.begin() + row * width, v.begin() + (row + 1) * width);
}

int32_t ArgMax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

TEST_F(CudaEngineTest, LogitsAndHiddenStatesMatchCpu) {
  if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  auto cpu = Make(DeviceKind::kCpu, 4096), gpu = Make(DeviceKind::kCuda, 256);
  ASSERT_TRUE(cpu && gpu);
  const auto tokens = testing::RandomTokens(700, config_.vocab_size, 1);
  std::vector<std::vector<float>> hidden_cpu, hidden_gpu;
  PrefillOptions oc, og;
  oc.all_logits = og.all_logits = true;
  oc.capture_hidden = &hidden_cpu;
  og.capture_hidden = &hidden_gpu;
  auto seq_cpu = cpu->NewSequence().value(), seq_gpu = gpu->NewSequence().value();
  const auto want = cpu->Prefill(*seq_cpu, tokens, oc).value();
  auto got = gpu->Prefill(*seq_gpu, tokens, og);
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectClose(*got, want, kLogitTol, "whole model: logits of 700 positions");
  const int64_t V = config_.vocab_size;
  double worst = 0;
  for (int64_t t = 0; t < 700; ++t) {
    worst = std::max(worst, testing::Measure(Slice(*got, t, V), Slice(want, t, V)).rel);
  }
  std::printf("    worst position: rel %.3g\n", worst);
  EXPECT_LE(worst, kPositionTol);
  for (size_t l = 0; l < hidden_cpu.size(); ++l) {
    ExpectClose(hidden_gpu[l], hidden_cpu[l], kLogitTol, "hidden state after layer " + std::to_string(l));
  }
  // Decode steps continue both sequences identically.
  for (int i = 0; i < 40; ++i) {
    const int32_t token = tokens[i];
    const auto a = cpu->Prefill(*seq_cpu, absl::MakeConstSpan(&token, 1)).value();
    const auto b = gpu->Prefill(*seq_gpu, absl::MakeConstSpan(&token, 1)).value();
    EXPECT_LE(testing::Measure(b, a).rel, kPositionTol) << "decode step " << i;
  }
}

TEST_F(CudaEngineTest, GreedyGenerationAgrees) {
  if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  auto cpu = Make(DeviceKind::kCpu, 512), gpu = Make(DeviceKind::kCuda, 512);
  ASSERT_TRUE(cpu && gpu);
  const auto prompt = testing::RandomTokens(300, config_.vocab_size, 5);
  auto sc = cpu->NewSequence().value(), sg = gpu->NewSequence().value();
  std::vector<float> lc = cpu->Prefill(*sc, prompt).value();
  std::vector<float> lg = gpu->Prefill(*sg, prompt).value();
  // Teacher-forced on the CPU's tokens: the CUDA argmax must agree wherever the CPU's top
  // logit leads the runner-up by more than the bf16 noise.
  int agreed = 0, decided = 0;
  for (int step = 0; step < 12; ++step) {
    std::vector<float> sorted = lc;
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
    const float spread = *std::max_element(lc.begin(), lc.end()) -
                         *std::min_element(lc.begin(), lc.end());
    const int32_t token = ArgMax(lc);
    if (sorted[0] - sorted[1] > 0.02f * spread) {
      ++decided;
      agreed += ArgMax(lg) == token;
      EXPECT_EQ(ArgMax(lg), token) << "step " << step;
    }
    lc = cpu->Prefill(*sc, absl::MakeConstSpan(&token, 1)).value();
    lg = gpu->Prefill(*sg, absl::MakeConstSpan(&token, 1)).value();
  }
  std::printf("    greedy: %d of %d clear steps agree\n", agreed, decided);
  // And Generate itself runs on the CUDA engine.
  GenerateOptions generate;
  generate.max_new_tokens = 4;
  auto result = gpu->Generate(*sg, lg, generate);
  ASSERT_TRUE(result.ok()) << result.status();
}

// Records in memory (Save/Load move raw bf16 pages).
class MemoryStore : public StateSink, public StateSource {
 public:
  absl::Status Put(const StateRecordKey& k, absl::string_view bytes) override {
    records_[Key(k)] = std::string(bytes);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Get(const StateRecordKey& k) override {
    auto it = records_.find(Key(k));
    if (it == records_.end()) return absl::NotFoundError("record");
    return it->second;
  }

 private:
  static std::string Key(const StateRecordKey& k) {
    return std::to_string(int(k.kind)) + "/" + std::to_string(k.layer) + "/" +
           std::to_string(k.head) + "/" + std::to_string(k.index) + "/" + std::to_string(k.rows);
  }
  std::map<std::string, std::string> records_;
};

TEST_F(CudaEngineTest, SaveLoadAndForkAreExact) {
  if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  auto gpu = Make(DeviceKind::kCuda, 128);
  ASSERT_TRUE(gpu);
  const auto tokens = testing::RandomTokens(450, config_.vocab_size, 9);
  auto seq = gpu->NewSequence().value();
  gpu->Prefill(*seq, absl::MakeConstSpan(tokens).first(400)).value();
  MemoryStore store;
  ASSERT_TRUE(gpu->SaveState(*seq, 0, store).ok());
  auto loaded = gpu->LoadState(400, store);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto fork = gpu->Fork(*seq).value();
  const auto rest = absl::MakeConstSpan(tokens).subspan(400);
  const auto a = gpu->Prefill(*seq, rest).value();
  const auto b = gpu->Prefill(**loaded, rest).value();
  const auto c = gpu->Prefill(*fork, rest).value();
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
}

// Storage-backed decode on the GPU under budgets of a few blocks (evictions, store reads and
// host-tier hits every step; the views' page tables updated by their deltas): logits equal
// to the resident sequence's, bit for bit.
TEST_F(CudaEngineTest, OnDemandDecodeEqualsResident) {
  if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  auto gpu = Make(DeviceKind::kCuda, 128);
  ASSERT_TRUE(gpu);
  const int64_t stored = 900, steps = 40;
  const auto tokens = testing::RandomTokens(stored + steps, config_.vocab_size, 12);
  auto seq = gpu->NewSequence().value();
  gpu->Prefill(*seq, absl::MakeConstSpan(tokens).first(stored)).value();
  auto store = std::make_shared<MemoryStore>();
  ASSERT_TRUE(gpu->SaveState(*seq, 0, *store).ok());
  auto resident = gpu->LoadState(stored, *store).value();
  const int64_t block_bytes = 2 * config_.sparse.block_size * config_.head_dim * 2;  // bf16
  auto cache = gpu->NewBlockCache(3 * block_bytes, 6 * block_bytes);
  auto lazy = gpu->LoadStateOnDemand(stored, store, cache, "doc@1");
  ASSERT_TRUE(lazy.ok()) << lazy.status();
  for (int64_t t = stored; t < stored + steps; ++t) {
    Sequence* a[] = {resident.get()};
    Sequence* b[] = {lazy->get()};
    const int32_t token = tokens[t];
    const auto want = gpu->DecodeBatch(a, absl::MakeConstSpan(&token, 1)).value();
    const auto got = gpu->DecodeBatch(b, absl::MakeConstSpan(&token, 1)).value();
    ASSERT_EQ(got[0], want[0]) << "position " << t;
  }
  const BlockCacheStats stats = cache->stats();
  EXPECT_GT(stats.source_reads, 0);
  EXPECT_GT(stats.device_evictions, 0);
}

// Random weights generated on the backend (EngineOptions::random_weights_seed): the CPU
// engine always (this part runs without a GPU), the CUDA engine when present. The CUDA
// weights are the same samples rounded to bf16.
TEST(RandomWeightsEngineTest, CpuAndCudaAgree) {
  EngineOptions options;
  options.random_weights_seed = 3;
  options.config_override = testing::TinyConfig();
  options.max_chunk_tokens = 256;
  auto cpu = Engine::Create(options);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  const auto tokens = testing::RandomTokens(300, options.config_override->vocab_size, 4);
  auto seq = (*cpu)->NewSequence().value();
  const auto want = (*cpu)->Prefill(*seq, tokens).value();
  for (float x : want) ASSERT_TRUE(std::isfinite(x));
  if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  options.device = DeviceKind::kCuda;
  auto gpu = Engine::Create(options);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  auto gseq = (*gpu)->NewSequence().value();
  const auto got = (*gpu)->Prefill(*gseq, tokens).value();
  ExpectClose(got, want, 5e-2, "random-weight model logits (bf16 weights vs fp32)");
}

}  // namespace
}  // namespace tome::engine
