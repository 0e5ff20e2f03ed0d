// tome_store_read_bench: what a cold follow-up question on a stored document costs in
// RocksDB reads alone, with the records one at a time (GetState) against batched
// (GetStates, RocksDB MultiGet), as the engine asks for them.
//
//   tome_store_read_bench --dir=/var/tmp/tome-store-read --tokens=1048576 --drop_caches
//
// Writes (once; kept in --dir for later runs) the state records of a sala-9b-shaped
// document of --tokens tokens, bf16: every sparse layer's KV blocks (8 layers x 2 KV groups
// x tokens/64 blocks of 32 KiB), K1/K2 summary pages and 24 Lightning states, as
// tomed's checkpoints do. Then, for each mode, reopens the store (RocksDB's block cache
// empty; with --drop_caches the OS page cache is dropped too, which needs root) and reads:
//   open:     what LoadStateOnDemand reads (Lightning states, summaries, the last blocks),
//   question: --question_blocks distinct random KV blocks, in one request per sparse layer
//             (FetchStoredBlocks asks for a layer's missing blocks at once),
// the batched mode splitting each request into GetStates calls of --batch keys.
// Prints a table of times, MiB/s and records. The data are random bytes (incompressible).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "drop_caches.h"
#include "tome/base/status_macros.h"
#include "tome/storage/context_store.h"

ABSL_FLAG(std::string, dir, "/var/tmp/tome-store-read-bench", "store directory (kept)");
ABSL_FLAG(int64_t, tokens, 1048576, "document length in tokens");
ABSL_FLAG(int64_t, question_blocks, 33301,
          "distinct KV blocks a question reads (33,301 measured for a 32-token question at "
          "1M tokens on the GPU, docs/PERFORMANCE.md)");
ABSL_FLAG(bool, drop_caches, false, "drop the OS page cache before each cold read (root)");
ABSL_FLAG(int, repeats, 2, "runs of each mode");
ABSL_FLAG(std::string, read_threads, "0,8",
          "StoreOptions::read_threads values to compare in the batched mode");
ABSL_FLAG(int, batch, 16, "at most this many keys per GetStates call in the batched mode, "
          "as the engine asks (kStateReadBatch); 0: each request whole");

namespace {

using Clock = std::chrono::steady_clock;
using tome::storage::ContextStore;
using tome::storage::StateKey;

// sala-9b's shapes (engine/src/model.h kSummaryPageRows; config: block 64, K1 stride 16,
// K2 stride 64, head_dim 128, 2 KV groups, 8 sparse / 24 Lightning layers of 32 x 128).
constexpr int kSparseLayers = 8, kGroups = 2, kLightningLayers = 24;
constexpr int64_t kBlock = 64, kHeadDim = 128, kElem = 2, kPageRows = 256;
constexpr int64_t kK1Stride = 16, kK2Stride = 64;
constexpr int64_t kLightningBytes = int64_t{32} * 128 * 128 * 4;
constexpr uint8_t kLightning = 1, kKv = 2, kK1 = 3, kK2 = 4;

int SparseLayerIndex(int s) { return s * 4; }  // any distinct layer numbers do
int LightningLayerIndex(int l) { return l + l / 3 + 1; }

std::string RandomBytes(std::mt19937_64& rng, int64_t n) {
  std::string s(static_cast<size_t>(n), '\0');
  for (int64_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::copy_n(reinterpret_cast<const char*>(&v), 8, s.data() + i);
  }
  return s;
}

absl::StatusOr<std::unique_ptr<ContextStore>> OpenStore(const std::string& dir,
                                                       int read_threads = 0) {
  tome::storage::StoreOptions options;
  options.model_fingerprint = "store-read-bench";
  options.sync_writes = false;
  options.read_threads = read_threads;
  return ContextStore::Open(dir, options);
}

absl::Status Write(ContextStore& store, tome::storage::DocumentId* id, int64_t tokens) {
  TOME_ASSIGN_OR_RETURN(auto record, store.CreateDocument(tome::storage::kDefaultTenant, "doc"));
  *id = record.id;
  std::vector<int32_t> ids(static_cast<size_t>(tokens), 7);
  TOME_ASSIGN_OR_RETURN(record, store.AppendText(tome::storage::kDefaultTenant, *id,
                                                   std::string(tokens, 'a'), ids));
  std::mt19937_64 rng(1);
  const int64_t blocks = (tokens + kBlock - 1) / kBlock;
  for (int s = 0; s < kSparseLayers; ++s) {
    for (int g = 0; g < kGroups; ++g) {
      auto checkpoint = store.BeginCheckpoint(tome::storage::kDefaultTenant, *id);
      const int32_t layer = SparseLayerIndex(s);
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t rows = std::min(kBlock, tokens - b * kBlock);
        checkpoint->Put(StateKey{kKv, layer, g, b, rows},
                        RandomBytes(rng, 2 * rows * kHeadDim * kElem));
      }
      for (const auto& [kind, stride] : {std::pair{kK1, kK1Stride}, std::pair{kK2, kK2Stride}}) {
        const int64_t n = tokens / stride;
        for (int64_t p = 0; p * kPageRows < n; ++p) {
          const int64_t rows = std::min(kPageRows, n - p * kPageRows);
          checkpoint->Put(StateKey{kind, layer, g, p, rows},
                          RandomBytes(rng, rows * kHeadDim * kElem));
        }
      }
      TOME_ASSIGN_OR_RETURN(record, store.CommitCheckpoint(*checkpoint, tokens));
      std::printf("wrote layer %d group %d\n", layer, g);
      std::fflush(stdout);
    }
  }
  auto checkpoint = store.BeginCheckpoint(tome::storage::kDefaultTenant, *id);
  for (int l = 0; l < kLightningLayers; ++l) {
    checkpoint->Put(StateKey{kLightning, LightningLayerIndex(l), 0, tokens, 0},
                    RandomBytes(rng, kLightningBytes));
  }
  return store.CommitCheckpoint(*checkpoint, tokens).status();
}

// Requests of one read: each is what one engine call asks for at once.
using Requests = std::vector<std::vector<StateKey>>;

Requests OpenRequests(int64_t tokens) {
  Requests requests;
  std::vector<StateKey> lightning;
  for (int l = 0; l < kLightningLayers; ++l) {
    lightning.push_back(StateKey{kLightning, LightningLayerIndex(l), 0, tokens, 0});
  }
  for (const StateKey& key : lightning) requests.push_back({key});  // Load reads them singly
  const int64_t blocks = (tokens + kBlock - 1) / kBlock;
  for (int s = 0; s < kSparseLayers; ++s) {
    for (int g = 0; g < kGroups; ++g) {
      std::vector<StateKey> keys;  // Model::Load: last blocks + summary pages, batched by 1024
      const int32_t layer = SparseLayerIndex(s);
      for (int64_t b = std::max<int64_t>(0, blocks - 3); b < blocks; ++b) {
        keys.push_back(StateKey{kKv, layer, g, b, std::min(kBlock, tokens - b * kBlock)});
      }
      for (const auto& [kind, stride] : {std::pair{kK1, kK1Stride}, std::pair{kK2, kK2Stride}}) {
        const int64_t n = tokens / stride;
        for (int64_t p = 0; p * kPageRows < n; ++p) {
          keys.push_back(StateKey{kind, layer, g, p, std::min(kPageRows, n - p * kPageRows)});
        }
      }
      for (size_t i = 0; i < keys.size(); i += 1024) {
        requests.emplace_back(keys.begin() + i, keys.begin() + std::min(keys.size(), i + 1024));
      }
    }
  }
  return requests;
}

Requests QuestionRequests(int64_t tokens, int64_t count) {
  const int64_t blocks = (tokens + kBlock - 1) / kBlock - 3;  // the last 3 are resident
  const int64_t total = kSparseLayers * kGroups * blocks;
  count = std::min(count, total);
  std::mt19937_64 rng(2);
  std::set<int64_t> chosen;
  while (static_cast<int64_t>(chosen.size()) < count) {
    chosen.insert(static_cast<int64_t>(rng() % static_cast<uint64_t>(total)));
  }
  Requests requests(kSparseLayers);
  for (int64_t c : chosen) {  // FetchStoredBlocks: one request per layer, group-major
    const int s = static_cast<int>(c / (kGroups * blocks));
    const int g = static_cast<int>(c / blocks % kGroups);
    requests[s].push_back(StateKey{kKv, SparseLayerIndex(s), g, c % blocks, kBlock});
  }
  return requests;
}

struct Result {
  double ms = 0;
  int64_t records = 0, bytes = 0;
};

absl::StatusOr<Result> Read(ContextStore& store, tome::storage::DocumentId id,
                            const Requests& requests, bool batched) {
  Result r;
  const auto t0 = Clock::now();
  for (const std::vector<StateKey>& keys : requests) {
    if (batched) {
      const size_t step = absl::GetFlag(FLAGS_batch) > 0 ? absl::GetFlag(FLAGS_batch) : keys.size();
      for (size_t i = 0; i < keys.size(); i += step) {
        const auto part = absl::MakeConstSpan(keys).subspan(i, std::min(step, keys.size() - i));
        for (auto& value : store.GetStates(tome::storage::kDefaultTenant, id, part)) {
          if (!value.ok()) return value.status();
          r.bytes += static_cast<int64_t>(value->size());
        }
      }
    } else {
      for (const StateKey& key : keys) {
        auto value = store.GetState(tome::storage::kDefaultTenant, id, key);
        if (!value.ok()) return value.status();
        r.bytes += static_cast<int64_t>(value->size());
      }
    }
    r.records += static_cast<int64_t>(keys.size());
  }
  r.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  return r;
}


int Fail(const absl::Status& status, const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string dir = absl::GetFlag(FLAGS_dir);
  const int64_t tokens = absl::GetFlag(FLAGS_tokens);
  if (tokens < 4 * kBlock || tokens % kK2Stride != 0) {
    std::fprintf(stderr, "--tokens must be a multiple of %lld and at least %lld\n",
                 static_cast<long long>(kK2Stride), static_cast<long long>(4 * kBlock));
    return 2;
  }
  tome::storage::DocumentId id = 0;
  {
    auto store = OpenStore(dir);
    if (!store.ok()) return Fail(store.status(), "opening the store");
    auto docs = (*store)->ListDocuments(tome::storage::kDefaultTenant, 0, 1);
    if (!docs.ok()) return Fail(docs.status(), "listing documents");
    if (!docs->empty() && docs->front().state_tokens == tokens &&
        docs->front().status == tome::storage::DocumentStatus::kReady) {
      id = docs->front().id;
      std::printf("reusing the document in %s\n", dir.c_str());
    } else if (!docs->empty()) {
      std::fprintf(stderr, "%s holds another document: remove it or pick another --dir\n",
                   dir.c_str());
      return 2;
    } else {
      const auto t0 = Clock::now();
      if (absl::Status s = Write(**store, &id, tokens); !s.ok()) return Fail(s, "writing");
      std::printf("wrote the state in %.1f s\n",
                  std::chrono::duration<double>(Clock::now() - t0).count());
    }
    auto bytes = (*store)->DocumentBytes(tome::storage::kDefaultTenant, id);
    if (bytes.ok()) std::printf("document on disk: %.2f GiB\n", *bytes / 1073741824.0);
  }
  const bool drop = absl::GetFlag(FLAGS_drop_caches);
  const Requests open = OpenRequests(tokens);
  const Requests question = QuestionRequests(tokens, absl::GetFlag(FLAGS_question_blocks));
  std::printf("\n%lld tokens; page cache %s before each run\n\n",
              static_cast<long long>(tokens), drop ? "dropped" : "kept");
  std::printf("| read | mode | run | ms | records | MiB | MiB/s |\n|---|---|---:|---:|---:|---:|---:|\n");
  std::vector<int> modes = {-1};  // -1: one by one; n >= 0: batched with n read threads
  for (absl::string_view t : absl::StrSplit(absl::GetFlag(FLAGS_read_threads), ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(t, &n) || n < 0) {
      std::fprintf(stderr, "bad --read_threads entry \"%s\"\n", std::string(t).c_str());
      return 2;
    }
    modes.push_back(n);
  }
  for (int run = 1; run <= absl::GetFlag(FLAGS_repeats); ++run) {
    for (int mode : modes) {
      if (drop && !tome::bench::DropPageCache()) {
        std::fprintf(stderr, "could not drop the page cache (needs root)\n");
        return 1;
      }
      auto store = OpenStore(dir, std::max(mode, 0));  // a fresh RocksDB block cache
      if (!store.ok()) return Fail(store.status(), "reopening the store");
      const std::string mode_name =
          mode < 0 ? "one by one (GetState)"
                   : absl::StrCat("batched (GetStates), ", mode, " read threads");
      for (const auto& [name, requests] : {std::pair{"open", &open}, std::pair{"question", &question}}) {
        auto r = Read(**store, id, *requests, mode >= 0);
        if (!r.ok()) return Fail(r.status(), "reading");
        const double mib = r->bytes / 1048576.0;
        std::printf("| %s | %s | %d | %.1f | %lld | %.1f | %.0f |\n", name, mode_name.c_str(),
                    run, r->ms, static_cast<long long>(r->records), mib, mib / (r->ms / 1000.0));
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
