// Faults the server must survive through its API: a stored state value damaged on disk
// (detected by checksum, the document marked FAILED and re-ingested from its text, nothing
// else affected), a client that stops reading its answer stream (generation waits, nothing
// piles up), and a client that goes away mid-answer (generation stops, its call slot is
// freed).
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/storage/store_test_util.h"
#include "tests/testutil/server_fixture.h"
#include "tome_core.h"

namespace tome {
namespace {

using storage::testing::RawDb;

class FaultsTest : public testing::ServerTest {
 protected:
  int64_t DecodeSteps() { return server_->core()->scheduler().stats().decode_steps; }

  // A network channel to the server (flow control is real on TCP, unlike in-process).
  std::shared_ptr<grpc::Channel> TcpChannel(grpc::ChannelArguments args = {}) {
    return grpc::experimental::CreateCustomChannelWithInterceptors(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials(), args,
        services::BearerInterceptors(api_key_));
  }

  grpc::Status Reingest(const std::string& id, v1::Document* document) {
    grpc::ClientContext context;
    v1::ReingestDocumentRequest request;
    request.set_document_id(id);
    return documents_->ReingestDocument(&context, request, document);
  }

  // With the server stopped: flips one byte in the middle of a stored record of document
  // `id` (tenant 1) in column family `cf`, its first record or its last.
  void DamageRecord(const std::string& id, const std::string& cf, bool last) {
    std::unique_ptr<RawDb> raw = RawDb::Open(dir_.Sub("data") + "/store", rocksdb::Env::Default());
    ASSERT_NE(raw, nullptr);
    std::string prefix(16, '\0');  // tenant 1, the document: big-endian u64s
    const uint64_t parts[2] = {1, std::stoull(id)};
    for (int p = 0; p < 2; ++p) {
      for (int i = 0; i < 8; ++i) prefix[8 * p + i] = static_cast<char>(parts[p] >> (56 - 8 * i));
    }
    std::string end = prefix;
    end[15] = static_cast<char>(end[15] + 1);
    const std::vector<std::string> keys = raw->Keys(cf, prefix, end);
    ASSERT_FALSE(keys.empty());
    const std::string& key = last ? keys.back() : keys.front();
    std::string value;
    ASSERT_TRUE(raw->db()->Get({}, raw->cf(cf), key, &value).ok());
    value[value.size() / 2] ^= 0x40;
    ASSERT_TRUE(raw->db()->Put({}, raw->cf(cf), key, value).ok());
  }

  void WaitReady(const std::string& id) {
    grpc::ClientContext context;
    v1::WatchIngestionRequest request;
    request.set_document_id(id);
    auto reader = documents_->WatchIngestion(&context, request);
    v1::IngestionProgress progress;
    while (reader->Read(&progress)) {
    }
    ASSERT_TRUE(reader->Finish().ok());
    ASSERT_EQ(progress.status(), v1::DOCUMENT_STATUS_READY) << progress.error();
  }
};

TEST_F(FaultsTest, CorruptedStateIsDetectedReportedAndReingestedFromItsText) {
  std::string text_a, text_b;
  for (int i = 0; i < 40; ++i) text_a += absl::StrCat("line ", i, " of the damaged book. ");
  for (int i = 0; i < 30; ++i) text_b += absl::StrCat("entry ", i, " of the healthy log. ");
  const std::string a = Ingest(text_a);
  const std::string b = Ingest(text_b);
  std::string answer_a, answer_b, deltas;
  v1::AskSummary summary;
  ASSERT_TRUE(Ask(a, "What is damaged?", &answer_a, &summary).ok());
  ASSERT_TRUE(Ask(b, "What is healthy?", &answer_b, &summary).ok());
  const v1::Document before = Get(a);

  // Stop the server and flip one byte in the middle of a stored KV block of document A.
  server_.reset();
  ASSERT_NO_FATAL_FAILURE(DamageRecord(a, "kv", /*last=*/false));
  StartServer();

  // Detected by its checksum and reported to the asker...
  grpc::Status status = Ask(a, "What is damaged?", &deltas, &summary);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "checksum")) << status.error_message();
  // ...and the document is marked FAILED, saying what to do.
  v1::Document damaged = Get(a);
  EXPECT_EQ(damaged.status(), v1::DOCUMENT_STATUS_FAILED);
  EXPECT_TRUE(absl::StrContains(damaged.error(), "damaged")) << damaged.error();
  EXPECT_TRUE(absl::StrContains(damaged.error(), "ReingestDocument")) << damaged.error();
  // Appending to it is refused until it is re-ingested.
  EXPECT_EQ(Append(a, " more").error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // Nothing else is affected: document B answers exactly as before.
  ASSERT_TRUE(Ask(b, "What is healthy?", &deltas, &summary).ok());
  EXPECT_EQ(deltas, answer_b);
  EXPECT_EQ(Get(b).status(), v1::DOCUMENT_STATUS_READY);

  // Only a FAILED document is re-ingested.
  v1::Document reingested;
  EXPECT_EQ(Reingest(b, &reingested).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Reingest("999", &reingested).error_code(), grpc::StatusCode::NOT_FOUND);

  // Re-ingestion recomputes the state from the stored text: same document, same answer.
  ASSERT_TRUE(Reingest(a, &reingested).ok());
  EXPECT_EQ(reingested.status(), v1::DOCUMENT_STATUS_INGESTING);
  EXPECT_TRUE(reingested.error().empty());
  WaitReady(a);
  const v1::Document after = Get(a);
  EXPECT_EQ(after.status(), v1::DOCUMENT_STATUS_READY);
  EXPECT_EQ(after.num_tokens(), before.num_tokens());
  EXPECT_EQ(after.version(), before.version());
  EXPECT_EQ(after.text_bytes(), before.text_bytes());
  ASSERT_TRUE(Ask(a, "What is damaged?", &deltas, &summary).ok());
  EXPECT_EQ(deltas, answer_a);
  // And once more from the store alone, after a restart.
  StartServer();
  ASSERT_TRUE(Ask(a, "What is damaged?", &deltas, &summary).ok());
  EXPECT_EQ(deltas, answer_a);
  EXPECT_EQ(summary.state_source(), "store");
}

// The same for a state opened on demand, whose block summaries are read in the background
// while the question runs: a damaged summary page fails the question with DATA_LOSS and
// marks the document FAILED, as a damaged record read before the question does.
TEST_F(FaultsTest, DamagedSummaryReadInTheBackgroundMarksTheDocumentFailed) {
  std::string text;
  for (int i = 0; i < 60; ++i) text += absl::StrCat("row ", i, " of the summarised table. ");
  const std::string id = Ingest(text);
  server_.reset();
  ASSERT_NO_FATAL_FAILURE(DamageRecord(id, "summary", /*last=*/true));
  services::ServerOptions options = Options();
  options.resident_kv_limit_bytes = 0;  // every state opens on demand
  StartServer(options);
  std::string deltas;
  v1::AskSummary summary;
  grpc::Status status = Ask(id, "Which row?", &deltas, &summary);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "checksum")) << status.error_message();
  const v1::Document damaged = Get(id);
  EXPECT_EQ(damaged.status(), v1::DOCUMENT_STATUS_FAILED);
  EXPECT_TRUE(absl::StrContains(damaged.error(), "ReingestDocument")) << damaged.error();
}

TEST_F(FaultsTest, SlowReaderPausesGenerationInsteadOfBuffering) {
  const std::string id = Ingest("A slow reader reads one token at a time. ");
  // Greedy decoding of the (seeded) test model runs to max_tokens on this question (no
  // stop token; "Go on and on" stops after 165 tokens), so
  // the answer is long enough to fill every buffer on the way.
  constexpr int kMaxTokens = 4096;
  // A client with a small receive window and no window growth: the server can have only a
  // little in flight before flow control stops it.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto queries = v1::QueryService::NewStub(TcpChannel(args));
  grpc::ClientContext context;
  v1::AskRequest request;
  request.set_document_id(id);
  request.set_question("Go on");
  request.set_max_tokens(kMaxTokens);
  request.set_no_citations(true);
  const int64_t steps_before = DecodeSteps();
  auto reader = queries->Ask(&context, request);
  v1::AskResponse response;
  ASSERT_TRUE(reader->Read(&response));  // the answer has started
  // Stop reading. Generation must stall: the reactor queues at most 64 messages and the
  // transport holds at most the client's window. Wait until the step count stops moving
  // (a slow machine takes longer to fill the buffers), then check that it stays put.
  int64_t stalled = -1;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < give_up) {
    const int64_t now = DecodeSteps() - steps_before;
    if (now == stalled) break;
    stalled = now;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(DecodeSteps() - steps_before, stalled) << "generation went on without a reader";
  EXPECT_LT(stalled, 1000) << "the server buffered " << stalled << " tokens for a slow reader";
  // Reading again lets it finish: nothing was lost.
  int64_t generated = 0;
  while (reader->Read(&response)) {
    if (response.has_summary()) generated = response.summary().generated_tokens();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(generated, kMaxTokens) << "the answer stopped early; the test needs a long one";
  EXPECT_GT(generated, stalled) << "generation never paused";
}

TEST_F(FaultsTest, ClientThatGoesAwayMidAnswerStopsItAndFreesItsSlot) {
  const std::string id = Ingest("Nobody waits for the end of this answer. ");
  const services::TomeCore* core = server_->core();
  {
    auto channel = TcpChannel();
    auto queries = v1::QueryService::NewStub(channel);
    grpc::ClientContext context;
    v1::AskRequest request;
    request.set_document_id(id);
    request.set_question("Go on and on");
    request.set_max_tokens(4096);
    auto reader = queries->Ask(&context, request);
    v1::AskResponse response;
    ASSERT_TRUE(reader->Read(&response));
    ASSERT_TRUE(reader->Read(&response));
    context.TryCancel();  // what gRPC sees when a client disconnects: the stream is reset
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // The server stops generating and gives the tenant's slot back.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server_->core()->usage().concurrent(1) > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(server_->core()->usage().concurrent(1), 0);
  const int64_t steps = DecodeSteps();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(DecodeSteps(), steps);
  EXPECT_LT(core->generated_tokens(), 4096);
  // And it keeps serving.
  std::string deltas;
  v1::AskSummary summary;
  EXPECT_TRUE(Ask(id, "Still there?", &deltas, &summary).ok());
}

}  // namespace
}  // namespace tome
