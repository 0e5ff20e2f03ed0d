// tome_on_demand_bench: a follow-up question on a stored document, with the state loaded
// whole (resident) or on demand (KV blocks fetched when selected, through the block cache).
//
//   tome_on_demand_bench --device=cuda --preset=sala-9b --random_weights --lengths=131072
//
// For each length: prefills that many random tokens, saves the state into a store in host
// memory, frees the sequence; then measures, for a 32-token question and --decode_tokens
// decode steps:
//   resident:        LoadState (every record) + question + first token, then decode;
//   on demand cold:  LoadStateOnDemand with an empty block cache, same work;
//   on demand warm:  a second on-demand sequence over the now warm cache.
// Reports time to first token, decode ms/token, bytes read from the store, the session's
// own engine memory (Sequence::OwnedBytes) and the block cache's engine memory. The store is
// host memory, not RocksDB: read costs of the database are not included.
#include <atomic>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "random_tokens.h"
#include "checkpoint/presets.h"
#include "tome/engine/engine.h"

ABSL_FLAG(std::string, preset, "bench5m", "model preset (random weights)");
ABSL_FLAG(std::string, lengths, "8192,32768", "document lengths");
ABSL_FLAG(int, decode_tokens, 16, "decode steps after the first token");
ABSL_FLAG(int, question_tokens, 32, "question length");
ABSL_FLAG(int64_t, chunk, 2048, "prefill chunk");
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda");
ABSL_FLAG(int64_t, block_cache_mb, 512, "engine-memory budget of the block cache, MiB");
ABSL_FLAG(int64_t, host_cache_mb, 2048, "host-memory budget of the block cache, MiB");
ABSL_FLAG(int, threads, 0, "CPU threads (0 = all)");

namespace {

using tome::bench::RandomTokens;

using Clock = std::chrono::steady_clock;
double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// State records in host memory; counts the bytes served.
class HostStore : public tome::engine::StateSink, public tome::engine::StateSource {
 public:
  absl::Status Put(const tome::engine::StateRecordKey& k, absl::string_view bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    records_[Key(k)] = std::string(bytes);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Get(const tome::engine::StateRecordKey& k) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = records_.find(Key(k));
    if (it == records_.end()) return absl::NotFoundError("no record");
    bytes_read_ += static_cast<int64_t>(it->second.size());
    return it->second;
  }
  int64_t TakeBytesRead() { return bytes_read_.exchange(0); }

 private:
  static std::tuple<int, int, int, int64_t, int64_t> Key(const tome::engine::StateRecordKey& k) {
    return {int(k.kind), k.layer, k.head, k.index, k.rows};
  }
  std::mutex mu_;
  std::map<std::tuple<int, int, int, int64_t, int64_t>, std::string> records_;
  std::atomic<int64_t> bytes_read_{0};
};

struct Run {
  double ttft_ms = 0, decode_ms = 0;
  int64_t bytes_read = 0, session_bytes = 0;
  std::vector<float> first_logits, last_logits;  // after the question; after decoding
};

// Question + first token, then decode steps, on `seq`.
absl::StatusOr<Run> Ask(const tome::engine::Engine& engine, tome::engine::Sequence& seq,
                        const std::vector<int32_t>& question, int decode_tokens,
                        Clock::time_point start) {
  Run run;
  auto logits = engine.Prefill(seq, question);
  if (!logits.ok()) return logits.status();
  run.ttft_ms = Ms(start, Clock::now());
  run.first_logits = std::move(logits).value();
  const auto t0 = Clock::now();
  int32_t token = question[0];
  for (int i = 0; i < decode_tokens; ++i) {
    tome::engine::Sequence* s = &seq;
    auto out = engine.DecodeBatch(absl::MakeConstSpan(&s, 1), absl::MakeConstSpan(&token, 1));
    if (!out.ok()) return out.status();
    run.last_logits = std::move((*out)[0]);
  }
  run.decode_ms = Ms(t0, Clock::now()) / std::max(1, decode_tokens);
  run.session_bytes = seq.OwnedBytes();
  return run;
}

// Largest |a - b| (infinity if the sizes differ).
double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}


}  // namespace

int main(int argc, char** argv) {
  tome::engine::PrepareCpuProcess(argv);
  absl::ParseCommandLine(argc, argv);
  using namespace tome;
  auto config = tools::PresetConfig(absl::GetFlag(FLAGS_preset));
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 2;
  }
  engine::EngineOptions options;
  options.device =
      absl::GetFlag(FLAGS_device) == "cuda" ? engine::DeviceKind::kCuda : engine::DeviceKind::kCpu;
  options.random_weights_seed = 1;
  options.config_override = *config;
  options.num_threads = absl::GetFlag(FLAGS_threads);
  options.max_chunk_tokens = absl::GetFlag(FLAGS_chunk);
  auto engine_or = engine::Engine::Create(options);
  if (!engine_or.ok()) {
    std::fprintf(stderr, "%s\n", engine_or.status().ToString().c_str());
    return 1;
  }
  const engine::Engine& engine = **engine_or;
  const int64_t V = engine.config().vocab_size;
  const auto question = RandomTokens(absl::GetFlag(FLAGS_question_tokens), V, 7);
  const int decode = absl::GetFlag(FLAGS_decode_tokens);
  const int64_t MiB = 1 << 20;
  std::printf("device %s, preset %s, block cache %lld MiB engine + %lld MiB host\n\n",
              absl::GetFlag(FLAGS_device).c_str(), absl::GetFlag(FLAGS_preset).c_str(),
              static_cast<long long>(absl::GetFlag(FLAGS_block_cache_mb)),
              static_cast<long long>(absl::GetFlag(FLAGS_host_cache_mb)));
  std::printf("| tokens | mode | TTFT ms | decode ms/token | read MiB | session MiB | cache MiB |"
              " store reads / host hits / engine hits | max abs logit diff vs resident |\n"
              "|---:|---|---:|---:|---:|---:|---:|---|---:|\n");
  for (absl::string_view item : absl::StrSplit(absl::GetFlag(FLAGS_lengths), ',')) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(item, &n) || n <= 0) continue;
    auto store = std::make_shared<HostStore>();
    {
      auto seq = engine.NewSequence().value();
      const auto doc = RandomTokens(n, V, 88172645463325252ull);
      if (auto s = engine.Prefill(*seq, doc).status(); !s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        return 1;
      }
      if (auto s = engine.SaveState(*seq, 0, *store); !s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        return 1;
      }
    }
    store->TakeBytesRead();
    Run resident;
    auto print = [&](const char* mode, const absl::StatusOr<Run>& run,
                     const engine::BlockCache* cache) {
      if (!run.ok()) {
        std::fprintf(stderr, "%s: %s\n", mode, run.status().ToString().c_str());
        return false;
      }
      engine::BlockCacheStats st;
      if (cache) st = const_cast<engine::BlockCache*>(cache)->stats();
      const double diff = std::max(MaxAbsDiff(run->first_logits, resident.first_logits),
                                   MaxAbsDiff(run->last_logits, resident.last_logits));
      std::printf("| %lld | %s | %.1f | %.2f | %.1f | %.1f | %.1f | %lld / %lld / %lld | %.3g |\n",
                  static_cast<long long>(n), mode, run->ttft_ms, run->decode_ms,
                  double(run->bytes_read) / MiB, double(run->session_bytes) / MiB,
                  double(st.device_bytes) / MiB, static_cast<long long>(st.source_reads),
                  static_cast<long long>(st.host_hits), static_cast<long long>(st.device_hits),
                  cache ? diff : 0.0);
      std::fflush(stdout);
      return true;
    };
    {  // resident
      const auto start = Clock::now();
      auto seq = engine.LoadState(n, *store);
      absl::StatusOr<Run> run =
          seq.ok() ? Ask(engine, **seq, question, decode, start) : absl::StatusOr<Run>(seq.status());
      if (run.ok()) run->bytes_read = store->TakeBytesRead();
      if (!print("resident", run, nullptr)) return 1;
      resident = *std::move(run);
    }
    auto cache = engine.NewBlockCache(absl::GetFlag(FLAGS_block_cache_mb) * MiB,
                                      absl::GetFlag(FLAGS_host_cache_mb) * MiB);
    for (const char* mode : {"on demand, cold", "on demand, warm"}) {
      const auto start = Clock::now();
      auto seq = engine.LoadStateOnDemand(n, store, cache, "bench");
      absl::StatusOr<Run> run =
          seq.ok() ? Ask(engine, **seq, question, decode, start) : absl::StatusOr<Run>(seq.status());
      if (run.ok()) run->bytes_read = store->TakeBytesRead();
      if (!print(mode, run, cache.get())) return 1;
    }
  }
  return 0;
}
