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
#include <atomic>
#include <mutex>
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
#include "tome/v1/query.grpc.pb.h"
#include "tome/v1/sessions.grpc.pb.h"

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
                                 absl::StrCat("--checkpoint_tokens=", kCheckpointTokens),
                                 "--metrics_listen="},
        log);
    const int port = testing::WaitForPortFile(port_file, 60);
    EXPECT_GT(port, 0) << "tomed did not start; see " << log;
    const std::string key =
        services::ReadCredential(data_dir + "/bootstrap-credentials", "TOME_API_KEY");
    channel_ = services::AuthenticatedChannel(absl::StrCat("127.0.0.1:", port), key);
    documents_ = v1::DocumentService::NewStub(channel_);
  }
  v1::DocumentService::Stub& documents() { return *documents_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  int Kill(int signal) { return process_->Stop(signal); }

 private:
  std::unique_ptr<ChildProcess> process_;
  std::shared_ptr<grpc::Channel> channel_;
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

// SIGKILL while clients append text, ask about the document and ask within a session, again
// and again: every append and session turn a client saw succeed is there after the restart
// (the one in flight at the kill is there whole or not at all), the stored state always
// loads, and afterwards ingestion completes and both kinds of question are answered.
TEST_F(CrashResumeTest, KilledDuringAsksAndAppendsKeepsEverythingAcknowledged) {
  const std::string data_dir = dir_.Sub("live");
  const std::string log = dir_.Sub("live.log");
  std::string durable_text = DocumentText().substr(0, 4000);
  std::string id, session_id;
  {
    Server server(data_dir, log);
    id = CreateAndAppend(server, durable_text);
    WaitReady(server, id);
    auto sessions = v1::SessionService::NewStub(server.channel());
    grpc::ClientContext context;
    v1::CreateSessionRequest request;
    request.set_document_id(id);
    v1::Session session;
    ASSERT_TRUE(sessions->CreateSession(&context, request, &session).ok());
    session_id = session.id();
    EXPECT_EQ(server.Kill(SIGTERM), 0);
  }
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> when_ms(100, 1500);
  int64_t acked_turns = 0;
  int total_acked_appends = 0, total_answers = 0, total_turns = 0;
  const int kills = std::max(2, Iterations() / 2);
  for (int kill = 0; kill < kills; ++kill) {
    std::mutex mu;
    std::vector<std::string> acked;  // appends acknowledged in this run, in order
    std::string in_flight;           // the append sent last, if not acknowledged
    std::atomic<bool> stop{false};
    std::atomic<int> answers{0}, turns{0};
    {
      Server server(data_dir, log);
      // The session's turns so far survived the previous kill (plus at most the one that was
      // in flight then).
      {
        auto sessions = v1::SessionService::NewStub(server.channel());
        grpc::ClientContext context;
        v1::GetSessionRequest request;
        request.set_session_id(session_id);
        v1::Session session;
        ASSERT_TRUE(sessions->GetSession(&context, request, &session).ok());
        EXPECT_GE(session.turns(), acked_turns);
        EXPECT_LE(session.turns(), acked_turns + 1);
        acked_turns = session.turns();
      }
      std::thread appender([&] {
        auto documents = v1::DocumentService::NewStub(server.channel());
        for (int n = 0; !stop; ++n) {
          const std::string piece = absl::StrCat(" run ", kill, " piece ", n, " of the log.");
          {
            std::lock_guard<std::mutex> lock(mu);
            in_flight = piece;
          }
          grpc::ClientContext context;
          v1::AppendTextResponse response;
          auto writer = documents->AppendText(&context, &response);
          v1::AppendTextRequest request;
          request.set_document_id(id);
          request.set_text(piece);
          writer->Write(request);
          writer->WritesDone();
          if (!writer->Finish().ok()) break;  // killed
          {
            std::lock_guard<std::mutex> lock(mu);
            acked.push_back(piece);
            in_flight.clear();
          }
          // A steady trickle, so that ingestion and the questions get their turns.
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      });
      auto ask = [&](bool in_session) {
        auto queries = v1::QueryService::NewStub(server.channel());
        while (!stop) {
          grpc::ClientContext context;
          v1::AskRequest request;
          if (in_session) {
            request.set_session_id(session_id);
          } else {
            request.set_document_id(id);
            request.set_version(1);  // the latest would wait for the appends to be ingested
          }
          request.set_question("What does the log say?");
          request.set_max_tokens(16);
          auto reader = queries->Ask(&context, request);
          v1::AskResponse response;
          while (reader->Read(&response)) {
          }
          if (!reader->Finish().ok()) break;  // killed
          ++(in_session ? turns : answers);
        }
      };
      std::thread asker([&] { ask(false); });
      std::thread session_asker([&] { ask(true); });
      // Kill once questions are flowing (the first one restores the state from the store),
      // at a random moment after that.
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (answers + turns == 0 && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(when_ms(rng)));
      server.Kill(SIGKILL);
      stop = true;
      appender.join();
      asker.join();
      session_asker.join();
    }
    acked_turns += turns;
    total_answers += answers;
    total_turns += turns;
    total_acked_appends += static_cast<int>(acked.size());
    // The store, opened directly: every acknowledged append is there, in order, and the one
    // in flight is there whole or not at all.
    auto store = OpenStore(data_dir);
    ASSERT_NE(store, nullptr);
    auto record = store->GetDocument(storage::kDefaultTenant, std::stoull(id));
    ASSERT_TRUE(record.ok()) << record.status();
    auto text = store->ReadText(storage::kDefaultTenant, std::stoull(id));
    ASSERT_TRUE(text.ok()) << text.status();
    for (const std::string& piece : acked) durable_text += piece;
    if (*text != durable_text) {
      ASSERT_FALSE(in_flight.empty()) << "text changed without an append in flight";
      ASSERT_EQ(*text, durable_text + in_flight) << "a partial or foreign append is stored";
      durable_text = *text;
    }
    EXPECT_EQ(record->text_bytes, static_cast<int64_t>(durable_text.size()));
    EXPECT_LE(record->state_tokens, record->num_tokens);
    if (record->state_tokens > 0) {
      EXPECT_FALSE(Logits(*store, record->id, record->state_tokens).empty())
          << "the committed state at " << record->state_tokens << " does not load";
    }
  }
  // Afterwards: ingestion of everything appended completes, and questions are answered.
  {
    Server server(data_dir, log);
    WaitReady(server, id);
    auto queries = v1::QueryService::NewStub(server.channel());
    for (bool in_session : {false, true}) {
      grpc::ClientContext context;
      v1::AskRequest request;
      if (in_session) {
        request.set_session_id(session_id);
      } else {
        request.set_document_id(id);
      }
      request.set_question("And now?");
      request.set_max_tokens(8);
      auto reader = queries->Ask(&context, request);
      v1::AskResponse response;
      v1::AskSummary summary;
      while (reader->Read(&response)) {
        if (response.has_summary()) summary = response.summary();
      }
      ASSERT_TRUE(reader->Finish().ok());
      if (in_session) {  // the turn in flight at the last kill may have been kept
        EXPECT_GE(summary.turn(), acked_turns + 1);
        EXPECT_LE(summary.turn(), acked_turns + 2);
      }
    }
    EXPECT_EQ(server.Kill(SIGTERM), 0);
  }
  std::printf("[crash] %d kills during asks and appends: %d appends, %d answers and %d session "
              "turns acknowledged before the kills, all durable\n",
              kills, total_acked_appends, total_answers, total_turns);
  EXPECT_GT(total_acked_appends, 0);
  EXPECT_GT(total_answers + total_turns, 0) << "no question was answered between the kills";
}

}  // namespace
}  // namespace tome
