// tome_bench: prefill throughput and decode latency of the engine at several context lengths.
//
//   tome_bench --preset=bench5m --lengths=4096,32768,131072 --decode_tokens=32
//   tome_bench --device=cuda --preset=sala-9b --random_weights --lengths=32768,131072
//   tome_bench --device=cuda --preset=sala-9b --random_weights --tensor_parallel=2 ...
//
// Writes a random checkpoint of the preset (or uses --model; or, with --random_weights,
// generates the weights on the backend without a checkpoint), then for each length: prefills
// that many random tokens into a fresh sequence (timed), and decodes --decode_tokens tokens
// one at a time (timed). Prints a Markdown table; on CUDA with the GPU memory in use after
// each length (cudaMemGetInfo; the backend's pool keeps what it once held, so this is the
// peak so far).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "checkpoint/presets.h"
#include "tome/engine/checkpoint.h"
#include "tome/engine/engine.h"

#ifdef TOME_BENCH_CUDA
#include <cuda_runtime.h>
#endif

ABSL_FLAG(std::string, preset, "bench5m", "model preset for the random checkpoint");
ABSL_FLAG(std::string, model, "", "existing model directory instead of a random preset");
ABSL_FLAG(std::string, lengths, "4096,32768,131072", "context lengths");
ABSL_FLAG(int, decode_tokens, 32, "tokens decoded after each prefill");
ABSL_FLAG(int, threads, 0, "CPU threads (0 = all)");
ABSL_FLAG(int64_t, chunk, 2048, "prefill chunk (tokens per forward call)");
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda");
ABSL_FLAG(bool, random_weights, false,
          "generate the preset's weights on the backend (no checkpoint written)");
ABSL_FLAG(int, tensor_parallel, 1,
          "ranks of tensor parallelism (CUDA: GPUs 0..N-1 over NCCL; CPU: in process)");

namespace {

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// GiB of GPU memory in use on the most loaded of devices 0 .. ranks-1 (0 without CUDA).
double GpuGiBInUse(int ranks = 1) {
  double most = 0;
#ifdef TOME_BENCH_CUDA
  int current = 0;
  cudaGetDevice(&current);
  for (int d = 0; d < ranks; ++d) {
    size_t free = 0, total = 0;
    if (cudaSetDevice(d) == cudaSuccess && cudaMemGetInfo(&free, &total) == cudaSuccess) {
      most = std::max(most, (total - free) / double(1 << 30));
    }
    cudaGetLastError();
  }
  cudaSetDevice(current);  // a one-rank engine runs on this thread's device
#endif
  return most;
}

}  // namespace

int main(int argc, char** argv) {
  tome::engine::PrepareCpuProcess(argv);
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_tensor_parallel) > 1) {
    // Before CUDA starts: eager kernel loading (a lazy first launch can deadlock against
    // NCCL kernels, engine/src/cuda/cuda_backend.cc) and no NVLink multicast.
    setenv("CUDA_MODULE_LOADING", "EAGER", 0);
    setenv("NCCL_NVLS_ENABLE", "0", 1);
  }
  using namespace tome;
  std::string model_dir = absl::GetFlag(FLAGS_model);
  std::string temp_dir;
  engine::EngineOptions options;
  const bool cuda = absl::GetFlag(FLAGS_device) == "cuda";
  if (!cuda && absl::GetFlag(FLAGS_device) != "cpu") {
    std::fprintf(stderr, "--device must be cpu or cuda\n");
    return 2;
  }
  options.device = cuda ? engine::DeviceKind::kCuda : engine::DeviceKind::kCpu;
  if (model_dir.empty()) {
    auto config = tools::PresetConfig(absl::GetFlag(FLAGS_preset));
    if (!config.ok()) {
      std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
      return 2;
    }
    if (absl::GetFlag(FLAGS_random_weights)) {
      options.random_weights_seed = 1;
      options.config_override = *config;
      model_dir = "(random weights on the backend, preset " + absl::GetFlag(FLAGS_preset) + ")";
    } else {
      temp_dir = (std::filesystem::temp_directory_path() / "tome_bench_model").string();
      engine::RandomCheckpointOptions ckpt;
      ckpt.seed = 1;
      if (auto s = engine::WriteRandomCheckpoint(*config, temp_dir, ckpt); !s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        return 1;
      }
      model_dir = temp_dir;
      options.model_dir = model_dir;
    }
  } else {
    options.model_dir = model_dir;
  }
  options.num_threads = absl::GetFlag(FLAGS_threads);
  options.max_chunk_tokens = absl::GetFlag(FLAGS_chunk);
  options.tensor_parallel = absl::GetFlag(FLAGS_tensor_parallel);
  const int ranks = cuda ? options.tensor_parallel : 1;
  const auto t_load = std::chrono::steady_clock::now();
  auto engine = engine::Engine::Create(options);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    return 1;
  }
  const engine::ModelConfig& c = (*engine)->config();
  std::printf("device: %s, tensor_parallel %d, model ready in %.1f s", cuda ? "cuda" : "cpu",
              options.tensor_parallel, Seconds(t_load, std::chrono::steady_clock::now()));
  if (cuda) std::printf(", GPU memory in use %.2f GiB (most loaded GPU)", GpuGiBInUse(ranks));
  std::printf(", chunk %lld\n", static_cast<long long>(options.max_chunk_tokens));
  std::printf("model: %s, %lld parameters, %lld layers (%lld sparse), hidden %lld, vocab %lld\n",
              model_dir.c_str(), static_cast<long long>(c.NumParameters()),
              static_cast<long long>(c.num_layers), static_cast<long long>(c.num_sparse_layers()),
              static_cast<long long>(c.hidden_size), static_cast<long long>(c.vocab_size));
  if (cuda) {  // warm-up: module loading, cuBLAS heuristics and pool growth stay out of timings
    auto seq = (*engine)->NewSequence().value();
    std::vector<int32_t> warm(std::min<int64_t>(2048, c.vocab_size - 3));
    for (size_t i = 0; i < warm.size(); ++i) warm[i] = static_cast<int32_t>(3 + i);
    if (!(*engine)->Prefill(*seq, warm).ok() ||
        !(*engine)->Prefill(*seq, absl::MakeConstSpan(warm).first(1)).ok()) {
      std::fprintf(stderr, "warm-up failed\n");
      return 1;
    }
  }
  std::printf("\n| context | prefill s | prefill tok/s | decode ms/token | GPU GiB |\n"
              "|---:|---:|---:|---:|---:|\n");
  for (absl::string_view item : absl::StrSplit(absl::GetFlag(FLAGS_lengths), ',')) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(item, &n) || n <= 0) continue;
    std::vector<int32_t> tokens(n);
    uint64_t x = 88172645463325252ull;
    for (auto& t : tokens) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      t = 3 + static_cast<int32_t>(x % (c.vocab_size - 3));
    }
    auto seq = (*engine)->NewSequence().value();
    const auto t0 = std::chrono::steady_clock::now();
    auto logits = (*engine)->Prefill(*seq, tokens);
    const auto t1 = std::chrono::steady_clock::now();
    if (!logits.ok()) {
      std::fprintf(stderr, "%s\n", logits.status().ToString().c_str());
      return 1;
    }
    // Decode steps: one token per forward call, as Generate runs them.
    int64_t steps = 0;
    std::vector<int32_t> next = {tokens[0]};
    const auto t2 = std::chrono::steady_clock::now();
    for (int i = 0; i < absl::GetFlag(FLAGS_decode_tokens); ++i) {
      auto out = (*engine)->Prefill(*seq, next);
      if (!out.ok()) {
        std::fprintf(stderr, "%s\n", out.status().ToString().c_str());
        return 1;
      }
      ++steps;
    }
    const auto t3 = std::chrono::steady_clock::now();
    std::printf("| %lld | %.2f | %.0f | %.2f | %.2f |\n", static_cast<long long>(n),
                Seconds(t0, t1), n / Seconds(t0, t1),
                1000 * Seconds(t2, t3) / std::max<int64_t>(steps, 1), GpuGiBInUse(ranks));
    std::fflush(stdout);
  }
  if (!temp_dir.empty()) std::filesystem::remove_all(temp_dir);
  return 0;
}
