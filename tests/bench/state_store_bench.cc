// tome_state_store_bench: how fast a document's model state goes into RocksDB and comes
// back, against recomputing it (the baseline a stored state saves).
//
//   tome_state_store_bench --model=engine/models/default --lengths=32768,131072
//
// For each length: prefills that many random tokens (timed: the baseline), saves the state
// as one checkpoint through the service's CheckpointSink into a RocksDbContextStore on disk
// (fsync on, as tomed runs), closes and reopens the store (RocksDB's block cache is cold; the
// OS page cache may not be), loads the state back through StoreSource, and checks that one
// more token gives the same logits from the loaded state as from the original.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "random_tokens.h"
#include "state_adapter.h"  // services/src
#include "tome/engine/engine.h"
#include "tome/storage/context_store.h"

ABSL_FLAG(std::string, model, TOME_DEFAULT_MODEL_DIR, "model directory");
ABSL_FLAG(std::string, lengths, "32768,131072", "document lengths in tokens");
ABSL_FLAG(std::string, dir, "", "directory for the stores (default: a new one under /tmp)");
ABSL_FLAG(bool, sync_writes, true, "fsync the write-ahead log, as tomed does by default");
ABSL_FLAG(int, threads, 0, "CPU threads (0 = all)");

namespace {

using tome::bench::RandomTokens;

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}


int Fail(const absl::Status& status, const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  tome::engine::PrepareCpuProcess(argv);
  absl::ParseCommandLine(argc, argv);
  using namespace tome;
  engine::EngineOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model);
  options.num_threads = absl::GetFlag(FLAGS_threads);
  options.max_chunk_tokens = 2048;
  auto engine_or = engine::Engine::Create(options);
  if (!engine_or.ok()) return Fail(engine_or.status(), "loading the model");
  const engine::Engine& engine = **engine_or;
  std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) {
    char tmpl[] = "/tmp/tome_state_bench_XXXXXX";
    if (!mkdtemp(tmpl)) return Fail(absl::InternalError("mkdtemp failed"), "temp dir");
    dir = tmpl;
  }
  const double MiB = 1 << 20;
  std::printf("model %s, stores under %s, sync_writes=%d\n\n", options.model_dir.c_str(),
              dir.c_str(), int(absl::GetFlag(FLAGS_sync_writes)));
  std::printf("| tokens | state MiB | prefill s (baseline) | save s | save MiB/s | load s | "
              "load MiB/s | load vs prefill | max abs logit diff |\n"
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (absl::string_view item : absl::StrSplit(absl::GetFlag(FLAGS_lengths), ',')) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(item, &n) || n <= 0) continue;
    const auto tokens = RandomTokens(n, engine.config().vocab_size, 88172645463325252ull);
    const std::vector<int32_t> next = {tokens[0]};

    auto original = engine.NewSequence();
    if (!original.ok()) return Fail(original.status(), "new sequence");
    const auto t0 = Clock::now();
    if (auto s = engine.Prefill(**original, tokens); !s.ok()) return Fail(s.status(), "prefill");
    const double prefill_s = Seconds(t0, Clock::now());

    storage::StoreOptions store_options;
    store_options.model_fingerprint = "state-store-bench";
    store_options.sync_writes = absl::GetFlag(FLAGS_sync_writes);
    const std::string path = absl::StrCat(dir, "/store-", n);
    storage::DocumentId id = 0;
    double save_s = 0;
    int64_t state_bytes = 0;
    {
      auto store = storage::ContextStore::Open(path, store_options);
      if (!store.ok()) return Fail(store.status(), "opening the store");
      auto doc = (*store)->CreateDocument(storage::kDefaultTenant, "bench");
      if (!doc.ok()) return Fail(doc.status(), "create");
      id = doc->id;
      auto appended = (*store)->AppendText(storage::kDefaultTenant, id, std::string(n, 'x'),
                                           tokens);
      if (!appended.ok()) return Fail(appended.status(), "append");
      const auto t1 = Clock::now();
      auto checkpoint = (*store)->BeginCheckpoint(storage::kDefaultTenant, id);
      services::CheckpointSink sink(checkpoint.get());
      if (auto s = engine.SaveState(**original, 0, sink); !s.ok()) return Fail(s, "save");
      state_bytes = checkpoint->num_bytes();
      auto committed = (*store)->CommitCheckpoint(*checkpoint, n);
      if (!committed.ok()) return Fail(committed.status(), "commit");
      save_s = Seconds(t1, Clock::now());
    }
    auto store = storage::ContextStore::Open(path, store_options);
    if (!store.ok()) return Fail(store.status(), "reopening the store");
    services::StoreSource source(store->get(), storage::kDefaultTenant, id);
    const auto t2 = Clock::now();
    auto loaded = engine.LoadState(n, source);
    if (!loaded.ok()) return Fail(loaded.status(), "load");
    const double load_s = Seconds(t2, Clock::now());

    auto a = engine.Prefill(**original, next);
    auto b = engine.Prefill(**loaded, next);
    if (!a.ok() || !b.ok()) return Fail(a.ok() ? b.status() : a.status(), "next token");
    double diff = a->size() == b->size() ? 0 : INFINITY;
    for (size_t i = 0; i < a->size() && i < b->size(); ++i) {
      diff = std::max(diff, double(std::fabs((*a)[i] - (*b)[i])));
    }
    std::printf("| %lld | %.1f | %.2f | %.3f | %.0f | %.3f | %.0f | %.0fx faster | %.3g |\n",
                static_cast<long long>(n), state_bytes / MiB, prefill_s, save_s,
                state_bytes / MiB / save_s, load_s, source.bytes_read() / MiB / load_s,
                prefill_s / load_s, diff);
    std::fflush(stdout);
  }
  return 0;
}
