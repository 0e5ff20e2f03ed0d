// Resumable ingestion under SIGKILL (issue 4): a tomed ingesting a document is killed at
// random moments, again and again. After every kill the store must hold a consistent
// document (a committed watermark whose state loads), the watermark never moves back, and
// once ingestion completes the final state gives exactly the logits of an uninterrupted run.
//
// TOME_CRASH_ITERATIONS sets the number of kills (default 8; the `slow` ctest entry runs 100).
#include <signal.h>

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model_fingerprint.h"
#include "state_adapter.h"
#include "tests/testutil/process.h"
#include "tests/testutil/temp_dir.h"
#include "tome/engine/engine.h"
#include "tome/storage/context_store.h"
#include "tome/services/bearer_interceptor.h"
#include "tome/v1/documents.grpc.pb.h"

namespace tome {
namespace {

using testing::ChildProcess;

constexpr int64_t kCheckpointTokens = 1024;

int Iterations() {
  const char* env = std::getenv("TOME_CRASH_ITERATIONS");
  return env ? std::atoi(env) : 8;
}

std::string DocumentText() {
  std::string text;
  std::mt19937 rng(11);
  const char* words[] = {"lamp", "ledger", "storm", "keeper", "harbour", "ship", "tower", "wind"};
  while (text.size() < 30000) {
    text += words[rng() % 8];
    text += rng() % 9 == 0 ? ".\n" : " ";
  }
  return text;
}

class Server {
 public:
  Server(const std::string& data_dir, const std::string& log) {
    const std::string port_file = data_dir + ".port";
    std::remove(port_file.c_str());
    process_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{TOMED_BINARY, "--listen=127.0.0.1:0", "--data_dir=" + data_dir,
                                 "--model=" TOME_MODEL_DIR, "--port_file=" + port_file,
                                 absl::StrCat("--checkpoint_tokens=", kCheckpointTokens)},
        log);
    const int port = testing::WaitForPortFile(port_file, 60);
    EXPECT_GT(port, 0) << "tomed did not start; see " << log;
    const std::string key =
        services::ReadCredential(data_dir + "/bootstrap-credentials", "TOME_API_KEY");
    documents_ = v1::DocumentService::NewStub(
        services::AuthenticatedChannel(absl::StrCat("127.0.0.1:", port), key));
  }
  v1::DocumentService::Stub& documents() { return *documents_; }
  int Kill(int signal) { return process_->Stop(signal); }

 private:
  std::unique_ptr<ChildProcess> process_;
  std::unique_ptr<v1::DocumentService::Stub> documents_;
};

std::string CreateAndAppend(Server& server, const std::string& text) {
  grpc::ClientContext context;
  v1::CreateDocumentRequest create;
  create.set_name("crash");
  v1::Document document;
  EXPECT_TRUE(server.documents().CreateDocument(&context, create, &document).ok());
  grpc::ClientContext append_context;
  v1::AppendTextResponse response;
  auto writer = server.documents().AppendText(&append_context, &response);
  v1::AppendTextRequest piece;
  piece.set_document_id(document.id());
  piece.set_text(text);
  writer->Write(piece);
  writer->WritesDone();
  EXPECT_TRUE(writer->Finish().ok());
  return document.id();
}

void WaitReady(Server& server, const std::string& id) {
  grpc::ClientContext context;
  v1::WatchIngestionRequest request;
  request.set_document_id(id);
  auto reader = server.documents().WatchIngestion(&context, request);
  v1::IngestionProgress progress;
  while (reader->Read(&progress)) {
  }
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(progress.status(), v1::DOCUMENT_STATUS_READY) << progress.error();
}

class CrashResumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine::EngineOptions options;
    options.model_dir = TOME_MODEL_DIR;
    engine_ = engine::Engine::Create(options).value();
    fingerprint_ = services::ComputeModelFingerprint(TOME_MODEL_DIR).value();
  }

  std::unique_ptr<storage::ContextStore> OpenStore(const std::string& dir) {
    storage::StoreOptions options;
    options.model_fingerprint = fingerprint_;
    auto store = storage::ContextStore::Open(dir + "/store", options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  // Next-token logits after the stored state at `tokens` and a fixed probe.
  std::vector<float> Logits(storage::ContextStore& store, storage::DocumentId id, int64_t tokens) {
    services::StoreSource source(&store, storage::kDefaultTenant, id);
    auto seq = engine_->LoadState(tokens, source);
    EXPECT_TRUE(seq.ok()) << seq.status();
    if (!seq.ok()) return {};
    const std::vector<int32_t> probe = {40, 41, 42};
    return engine_->Prefill(**seq, probe).value();
  }

  testing::TempDir dir_;
  std::unique_ptr<engine::Engine> engine_;
  std::string fingerprint_;
};

TEST_F(CrashResumeTest, KilledIngestionResumesAndEndsWhereAnUninterruptedRunEnds) {
  const std::string text = DocumentText();
  // The uninterrupted run, and how long it takes.
  const std::string ref_dir = dir_.Sub("ref");
  const auto start = std::chrono::steady_clock::now();
  std::string ref_id;
  {
    Server server(ref_dir, dir_.Sub("ref.log"));
    ref_id = CreateAndAppend(server, text);
    WaitReady(server, ref_id);
    EXPECT_EQ(server.Kill(SIGTERM), 0);
  }
  const double ingest_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

  const std::string crash_dir = dir_.Sub("crash");
  std::string crash_id;
  {
    Server server(crash_dir, dir_.Sub("crash.log"));
    crash_id = CreateAndAppend(server, text);
    server.Kill(SIGKILL);
  }
  std::mt19937 rng(2026);
  std::uniform_real_distribution<double> when(0.0, ingest_ms * 0.6);
  int64_t last_watermark = 0;
  int kills = 0, resumed_mid_way = 0;
  bool ready = false;
  for (int i = 0; i < Iterations() && !ready; ++i) {
    {
      Server server(crash_dir, dir_.Sub("crash.log"));
      std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(when(rng)));
      server.Kill(SIGKILL);
      ++kills;
    }
    // Inspect the store directly between runs.
    auto store = OpenStore(crash_dir);
    ASSERT_NE(store, nullptr);
    auto record = store->GetDocument(storage::kDefaultTenant, std::stoull(crash_id));
    ASSERT_TRUE(record.ok()) << record.status();
    EXPECT_GE(record->state_tokens, last_watermark) << "the watermark moved back";
    EXPECT_LE(record->state_tokens, record->num_tokens);
    if (record->state_tokens > 0) {
      EXPECT_TRUE(std::count(record->checkpoints.begin(), record->checkpoints.end(),
                             record->state_tokens) == 1);
      EXPECT_FALSE(Logits(*store, record->id, record->state_tokens).empty())
          << "the committed state at " << record->state_tokens << " does not load";
    }
    if (record->state_tokens > last_watermark && record->state_tokens < record->num_tokens) {
      ++resumed_mid_way;
    }
    last_watermark = record->state_tokens;
    ready = record->status == storage::DocumentStatus::kReady;
  }
  {
    Server server(crash_dir, dir_.Sub("crash.log"));
    WaitReady(server, crash_id);
    EXPECT_EQ(server.Kill(SIGTERM), 0);
  }
  std::printf("[crash] %d kills, %d of them between checkpoints that made progress; "
              "uninterrupted ingestion %.0f ms\n", kills, resumed_mid_way, ingest_ms);

  auto ref_store = OpenStore(ref_dir);
  auto crash_store = OpenStore(crash_dir);
  auto ref = ref_store->GetDocument(storage::kDefaultTenant, std::stoull(ref_id)).value();
  auto crashed = crash_store->GetDocument(storage::kDefaultTenant, std::stoull(crash_id)).value();
  ASSERT_EQ(crashed.state_tokens, ref.state_tokens);
  EXPECT_EQ(crashed.checkpoints, ref.checkpoints);
  const auto a = Logits(*ref_store, ref.id, ref.state_tokens);
  const auto b = Logits(*crash_store, crashed.id, crashed.state_tokens);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(a == b) << "logits after resumed ingestion differ from the uninterrupted run";
}

}  // namespace
}  // namespace tome
