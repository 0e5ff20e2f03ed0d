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
// host memory, or, with --store_dir (builds with storage/: TOME_SERVICES or TOME_STORAGE), a
// RocksDB context store on disk, reopened (and with --drop_caches the OS page cache
// dropped) before the resident and the cold run so that both read from the disk.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "checkpoint/presets.h"
#include "drop_caches.h"
#include "random_tokens.h"
#include "tome/engine/engine.h"
#if TOME_BENCH_ROCKSDB
#include <filesystem>

#include "tome/storage/context_store.h"
#endif

ABSL_FLAG(std::string, preset, "bench5m", "model preset (random weights)");
ABSL_FLAG(std::string, lengths, "8192,32768", "document lengths");
ABSL_FLAG(int, decode_tokens, 16, "decode steps after the first token");
ABSL_FLAG(int, question_tokens, 32, "question length");
ABSL_FLAG(int, repeats, 1, "resident, cold and warm runs per length (a fresh cache each)");
ABSL_FLAG(int64_t, chunk, 2048, "prefill chunk");
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda");
ABSL_FLAG(int64_t, block_cache_mb, 512, "engine-memory budget of the block cache, MiB");
ABSL_FLAG(int64_t, host_cache_mb, 2048, "host-memory budget of the block cache, MiB");
ABSL_FLAG(int, threads, 0, "CPU threads (0 = all)");
ABSL_FLAG(int, state_read_threads, tome::engine::EngineOptions{}.state_read_threads,
          "EngineOptions::state_read_threads: helper threads loading a stored state");
ABSL_FLAG(bool, overlap_loading, tome::engine::EngineOptions{}.overlap_state_loading,
          "EngineOptions::overlap_state_loading: read the sparse layers of a state opened on "
          "demand while the question runs");
ABSL_FLAG(int, cache_read_threads, tome::engine::BlockCache::kDefaultReadThreads,
          "helper threads of the block cache reading store batches in parallel");
ABSL_FLAG(std::string, store_dir, "",
          "keep the state in a RocksDB context store in this (new) directory instead of host "
          "memory (builds with storage/ only)");
ABSL_FLAG(bool, drop_caches, false, "with --store_dir: drop the OS page cache before the "
          "resident and the cold run (needs root)");
ABSL_FLAG(int, store_read_threads, 8, "with --store_dir: StoreOptions::read_threads");

namespace {

using tome::bench::RandomTokens;

using Clock = std::chrono::steady_clock;
double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// State records in host memory; counts the bytes served. Reads share the lock (the block
// cache reads batches on several threads).
class HostStore : public tome::engine::StateSink, public tome::engine::StateSource {
 public:
  absl::Status Put(const tome::engine::StateRecordKey& k, absl::string_view bytes) override {
    std::unique_lock<std::shared_mutex> lock(mu_);
    records_[Key(k)] = std::string(bytes);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Get(const tome::engine::StateRecordKey& k) override {
    std::shared_lock<std::shared_mutex> lock(mu_);
    auto it = records_.find(Key(k));
    if (it == records_.end()) return absl::NotFoundError("no record");
    bytes_read_ += static_cast<int64_t>(it->second.size());
    return it->second;
  }
  // The records' bytes in place, under the shared lock (no copy but the reader's).
  absl::Status ReadMany(absl::Span<const tome::engine::StateRecordKey> keys,
                        RecordVisitor visit) override {
    std::shared_lock<std::shared_mutex> lock(mu_);
    for (size_t i = 0; i < keys.size(); ++i) {
      auto it = records_.find(Key(keys[i]));
      if (it == records_.end()) return absl::NotFoundError("no record");
      bytes_read_ += static_cast<int64_t>(it->second.size());
      if (absl::Status s = visit(i, it->second); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  int64_t TakeBytesRead() { return bytes_read_.exchange(0); }

 private:
  static std::tuple<int, int, int, int64_t, int64_t> Key(const tome::engine::StateRecordKey& k) {
    return {int(k.kind), k.layer, k.head, k.index, k.rows};
  }
  std::shared_mutex mu_;
  std::map<std::tuple<int, int, int, int64_t, int64_t>, std::string> records_;
  std::atomic<int64_t> bytes_read_{0};
};

#if TOME_BENCH_ROCKSDB
// The state of one document in a RocksDB context store: records go into one checkpoint,
// committed by Commit; reads count their bytes.
class RocksStore : public tome::engine::StateSink, public tome::engine::StateSource {
 public:
  static absl::StatusOr<std::shared_ptr<RocksStore>> Open(const std::string& dir) {
    tome::storage::StoreOptions options;
    options.model_fingerprint = "on-demand-bench";
    options.sync_writes = false;
    options.read_threads = absl::GetFlag(FLAGS_store_read_threads);
    auto store = tome::storage::ContextStore::Open(dir, options);
    if (!store.ok()) return store.status();
    auto out = std::shared_ptr<RocksStore>(new RocksStore(std::move(store).value()));
    auto docs = out->store_->ListDocuments(tome::storage::kDefaultTenant, 0, 1);
    if (!docs.ok()) return docs.status();
    if (!docs->empty()) out->doc_ = docs->front().id;
    return out;
  }
  // A new document of `tokens` tokens whose state the next Puts write.
  absl::Status Begin(int64_t tokens) {
    auto doc = store_->CreateDocument(tome::storage::kDefaultTenant, "bench");
    if (!doc.ok()) return doc.status();
    doc_ = doc->id;
    auto appended = store_->AppendText(tome::storage::kDefaultTenant, doc_, std::string(tokens, 'a'),
                                       std::vector<int32_t>(tokens, 1));
    if (!appended.ok()) return appended.status();
    checkpoint_ = store_->BeginCheckpoint(tome::storage::kDefaultTenant, doc_);
    return absl::OkStatus();
  }
  absl::Status Commit(int64_t tokens) {
    auto r = store_->CommitCheckpoint(*checkpoint_, tokens);
    checkpoint_.reset();
    return r.status();
  }
  absl::Status Put(const tome::engine::StateRecordKey& k, absl::string_view bytes) override {
    checkpoint_->Put(Key(k), bytes);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Get(const tome::engine::StateRecordKey& k) override {
    auto value = store_->GetState(tome::storage::kDefaultTenant, doc_, Key(k));
    if (value.ok()) bytes_read_ += static_cast<int64_t>(value->size());
    return value;
  }
  std::vector<absl::StatusOr<std::string>> GetMany(
      absl::Span<const tome::engine::StateRecordKey> keys) override {
    std::vector<tome::storage::StateKey> ks;
    for (const auto& k : keys) ks.push_back(Key(k));
    auto values = store_->GetStates(tome::storage::kDefaultTenant, doc_, ks);
    for (const auto& v : values) {
      if (v.ok()) bytes_read_ += static_cast<int64_t>(v->size());
    }
    return values;
  }
  absl::Status ReadMany(absl::Span<const tome::engine::StateRecordKey> keys,
                        RecordVisitor visit) override {
    std::vector<tome::storage::StateKey> ks;
    for (const auto& k : keys) ks.push_back(Key(k));
    return store_->VisitStates(tome::storage::kDefaultTenant, doc_, ks,
                               [&](size_t i, absl::StatusOr<absl::string_view> record) {
                                 if (!record.ok()) return record.status();
                                 bytes_read_ += static_cast<int64_t>(record->size());
                                 return visit(i, *record);
                               });
  }
  int64_t TakeBytesRead() { return bytes_read_.exchange(0); }

 private:
  explicit RocksStore(std::unique_ptr<tome::storage::ContextStore> store)
      : store_(std::move(store)) {}
  static tome::storage::StateKey Key(const tome::engine::StateRecordKey& k) {
    return {static_cast<uint8_t>(k.kind), k.layer, k.head, k.index, k.rows};
  }
  std::unique_ptr<tome::storage::ContextStore> store_;
  std::unique_ptr<tome::storage::ContextStore::Checkpoint> checkpoint_;
  tome::storage::DocumentId doc_ = 0;
  std::atomic<int64_t> bytes_read_{0};
};

#endif

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
  options.state_read_threads = absl::GetFlag(FLAGS_state_read_threads);
  options.overlap_state_loading = absl::GetFlag(FLAGS_overlap_loading);
  options.max_chunk_tokens = absl::GetFlag(FLAGS_chunk);
  auto engine_or = engine::Engine::Create(options);
  if (!engine_or.ok()) {
    std::fprintf(stderr, "%s\n", engine_or.status().ToString().c_str());
    return 1;
  }
  const engine::Engine& engine = **engine_or;
  const std::string store_dir = absl::GetFlag(FLAGS_store_dir);
#if !TOME_BENCH_ROCKSDB
  if (!store_dir.empty()) {
    std::fprintf(stderr, "--store_dir needs a build with storage/ (-DTOME_STORAGE=ON)\n");
    return 2;
  }
#endif
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
    // The store: host memory, or RocksDB under --store_dir.
    std::shared_ptr<HostStore> host;
    std::shared_ptr<engine::StateSource> store;
    engine::StateSink* sink = nullptr;
    std::function<int64_t()> take_bytes_read;
    std::function<bool()> make_cold = [] { return true; };  // before resident and cold runs
#if TOME_BENCH_ROCKSDB
    std::shared_ptr<RocksStore> rocks;
    const std::string dir = store_dir + "/tokens-" + std::to_string(n);
    if (!store_dir.empty()) {
      std::error_code exists;
      if (std::filesystem::exists(dir, exists)) {
        std::fprintf(stderr, "%s exists: give a new --store_dir\n", dir.c_str());
        return 2;
      }
      std::filesystem::create_directories(store_dir, exists);
      auto opened = RocksStore::Open(dir);
      absl::Status begun = opened.ok() ? (*opened)->Begin(n) : opened.status();
      if (!begun.ok()) {
        std::fprintf(stderr, "cannot create a store in %s: %s\n", dir.c_str(),
                     begun.ToString().c_str());
        return 1;
      }
      rocks = *opened;
      store = rocks;
      sink = rocks.get();
      take_bytes_read = [&rocks] { return rocks->TakeBytesRead(); };
      make_cold = [&] {
        rocks.reset();
        store.reset();
        if (absl::GetFlag(FLAGS_drop_caches) && !tome::bench::DropPageCache()) {
          std::fprintf(stderr, "could not drop the page cache (needs root)\n");
          return false;
        }
        auto reopened = RocksStore::Open(dir);
        if (!reopened.ok()) {
          std::fprintf(stderr, "%s\n", reopened.status().ToString().c_str());
          return false;
        }
        rocks = *reopened;
        store = rocks;
        return true;
      };
    }
#endif
    if (sink == nullptr) {
      host = std::make_shared<HostStore>();
      store = host;
      sink = host.get();
      take_bytes_read = [&host] { return host->TakeBytesRead(); };
    }
    {
      auto seq = engine.NewSequence().value();
      const auto doc = RandomTokens(n, V, 88172645463325252ull);
      if (auto s = engine.Prefill(*seq, doc).status(); !s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        return 1;
      }
      if (auto s = engine.SaveState(*seq, 0, *sink); !s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        return 1;
      }
#if TOME_BENCH_ROCKSDB
      if (rocks) {
        if (auto s = rocks->Commit(n); !s.ok()) {
          std::fprintf(stderr, "%s\n", s.ToString().c_str());
          return 1;
        }
      }
#endif
    }
    take_bytes_read();
    // Each repeat: a resident load, then a fresh block cache's cold and warm questions.
    for (int repeat = 0; repeat < absl::GetFlag(FLAGS_repeats); ++repeat) {
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
        std::printf(
            "| %lld | %s | %.1f | %.2f | %.1f | %.1f | %.1f | %lld / %lld / %lld | %.3g |\n",
            static_cast<long long>(n), mode, run->ttft_ms, run->decode_ms,
            double(run->bytes_read) / MiB, double(run->session_bytes) / MiB,
            double(st.device_bytes) / MiB, static_cast<long long>(st.source_reads),
            static_cast<long long>(st.host_hits), static_cast<long long>(st.device_hits),
            cache ? diff : 0.0);
        std::fflush(stdout);
        return true;
      };
      {  // resident
        if (!make_cold()) return 1;
        const auto start = Clock::now();
        auto seq = engine.LoadState(n, *store);
        absl::StatusOr<Run> run = seq.ok() ? Ask(engine, **seq, question, decode, start)
                                           : absl::StatusOr<Run>(seq.status());
        if (run.ok()) run->bytes_read = take_bytes_read();
        if (!print("resident", run, nullptr)) return 1;
        resident = *std::move(run);
      }
      auto cache = engine.NewBlockCache(absl::GetFlag(FLAGS_block_cache_mb) * MiB,
                                        absl::GetFlag(FLAGS_host_cache_mb) * MiB,
                                        absl::GetFlag(FLAGS_cache_read_threads));
      // As tomed does at start-up: the host tier's (pinned) memory is not part of a question.
      if (absl::Status s = cache->ReserveHostMemory(); !s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        return 1;
      }
      for (const char* mode : {"on demand, cold", "on demand, warm"}) {
        if (std::string_view(mode).ends_with("cold") && !make_cold()) return 1;
        const auto start = Clock::now();
        auto seq = engine.LoadStateOnDemand(n, store, cache, "bench");
        absl::StatusOr<Run> run = seq.ok() ? Ask(engine, **seq, question, decode, start)
                                           : absl::StatusOr<Run>(seq.status());
        if (run.ok()) run->bytes_read = take_bytes_read();
        if (!print(mode, run, cache.get())) return 1;
      }
    }
  }
  return 0;
}
