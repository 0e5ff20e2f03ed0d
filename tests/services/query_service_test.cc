// QueryService over an in-process channel.
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/server_fixture.h"
#include "tome_core.h"

namespace tome {
namespace {

// Two blocks (K and V) of the tiny test model: a block cache this small evicts constantly.
constexpr int64_t kTwoTinyBlocks = 2 * (2 * 64 * 16 * 4);

class QueryServiceTest : public testing::ServerTest {
 protected:
  // Engine memory of a whole resident state of `tokens` tokens (Lightning, KV, summaries).
  int64_t WholeStateBytes(int64_t tokens) {
    const engine::StateSizes sizes = server_->core()->engine().state_sizes();
    return sizes.lightning_bytes +
           tokens * (sizes.kv_bytes_per_token + sizes.summary_bytes_per_token);
  }
};

TEST_F(QueryServiceTest, StreamsAnAnswerWithASummary) {
  const std::string id = Ingest(std::string(900, 'q') + " The answer is 42.");
  std::string deltas;
  v1::AskSummary summary;
  ASSERT_TRUE(Ask(id, "What is the answer?", &deltas, &summary, 12).ok());
  EXPECT_EQ(deltas, summary.answer());
  EXPECT_GT(summary.generated_tokens(), 0);
  EXPECT_LE(summary.generated_tokens(), 12);
  EXPECT_EQ(summary.document_tokens(), Get(id).num_tokens());
  EXPECT_EQ(summary.prompt_tokens(),
            static_cast<int64_t>(std::string("\nQuestion: What is the answer?\nAnswer:").size()));
  EXPECT_EQ(summary.document_prefill_tokens(), 0);
  EXPECT_GT(summary.timings().total_ms(), 0);
  EXPECT_GE(summary.timings().total_ms(), summary.timings().first_token_ms());
}

TEST_F(QueryServiceTest, SameAnswerFromMemoryAndAfterRestartFromTheStore) {
  const std::string id = Ingest(std::string(600, 'm') + " Tome remembers.");
  std::string first, second, third;
  v1::AskSummary s1, s2, s3;
  ASSERT_TRUE(Ask(id, "Repeat", &first, &s1).ok());
  ASSERT_TRUE(Ask(id, "Repeat", &second, &s2).ok());
  EXPECT_EQ(second, first);
  EXPECT_EQ(s2.state_source(), "memory");
  StartServer();  // a new server process state: nothing cached
  ASSERT_TRUE(Ask(id, "Repeat", &third, &s3).ok());
  EXPECT_EQ(third, first);
  EXPECT_EQ(s3.state_source(), "store");
  EXPECT_EQ(s3.document_prefill_tokens(), 0);
}

TEST_F(QueryServiceTest, SameAnswerWhenTheStateIsOpenedOnDemand) {
  std::string text;
  for (int i = 0; i < 60; ++i) text += "Line " + std::to_string(i) + " of a long record. ";
  const std::string id = Ingest(text + "The vault code is 31337.");
  std::string resident, on_demand;
  v1::AskSummary s1, s2;
  StartServer();
  ASSERT_TRUE(Ask(id, "What is the vault code?", &resident, &s1).ok());
  EXPECT_EQ(s1.state_source(), "store");
  // Every state now opens on demand, with room for two KV blocks in engine memory and none
  // in host memory: the answer must not change.
  services::ServerOptions options = Options();
  options.resident_kv_limit_bytes = 0;
  options.block_cache_bytes = kTwoTinyBlocks;
  options.host_block_cache_bytes = 0;
  StartServer(options);
  ASSERT_TRUE(Ask(id, "What is the vault code?", &on_demand, &s2).ok());
  EXPECT_EQ(s2.state_source(), "store");
  EXPECT_EQ(on_demand, resident);
  const engine::BlockCacheStats stats = server_->core()->block_cache_stats();
  EXPECT_GT(stats.source_reads, 0);
  EXPECT_GT(stats.device_evictions, 0);
  EXPECT_LE(stats.device_bytes, options.block_cache_bytes);
}

// Admission control (--ask_memory_mb): a question larger than the whole budget is refused
// with RESOURCE_EXHAUSTED and the reason; concurrent questions within it queue and all run;
// every reservation is returned afterwards.
TEST_F(QueryServiceTest, QuestionsWaitForEngineMemoryOrAreRefused) {
  const std::string id = Ingest(std::string(700, 'w') + " The code word is heron.");
  services::ServerOptions options = Options();
  options.ask_memory_bytes = 1024;  // far below one question of the tiny model
  StartServer(options);
  std::string deltas;
  v1::AskSummary summary;
  const grpc::Status refused = Ask(id, "What is the code word?", &deltas, &summary);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), ::testing::HasSubstr("--ask_memory_mb"));
  EXPECT_THAT(refused.error_message(), ::testing::HasSubstr("of engine memory"));
  EXPECT_EQ(server_->core()->admission().refused(), 1);

  // Room for one question at a time once the document's state is cached: each reserves a
  // fork's Lightning states and its prompt and answer tokens (max_tokens 16).
  options.ask_memory_bytes = 0;
  StartServer(options);
  std::string want;
  ASSERT_TRUE(Ask(id, "What is the code word?", &want, &summary).ok());
  const engine::StateSizes sizes = server_->core()->engine().state_sizes();
  const int64_t one = sizes.lightning_bytes + (summary.prompt_tokens() + 16) *
                                                  (sizes.kv_bytes_per_token +
                                                   sizes.summary_bytes_per_token);
  options.ask_memory_bytes = one + one / 2;
  StartServer(options);
  // Ingested here, so its state is in memory and a question opens nothing.
  const std::string cached = Ingest(std::string(700, 'w') + " The code word is heron.");
  std::vector<std::thread> clients;
  std::vector<std::string> answers(4);
  std::vector<grpc::Status> codes(4);
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] {
      v1::AskSummary s;
      codes[i] = Ask(cached, "What is the code word?", &answers[i], &s);
    });
  }
  for (auto& c : clients) c.join();
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(codes[i].ok()) << codes[i].error_message();
    EXPECT_EQ(answers[i], want);
  }
  EXPECT_EQ(server_->core()->admission().in_use_bytes(), 0);
  EXPECT_EQ(server_->core()->admission().refused(), 0);
  EXPECT_EQ(server_->core()->admission().budget_bytes(), one + one / 2);
  EXPECT_GT(server_->core()->admission().waited(), 0);  // they did queue
}

// --ingest_memory_mb: documents being ingested hold their whole state in engine memory until
// done; past the budget they take turns (one gives its memory back and resumes from its last
// checkpoint), and a document whose state can never fit fails with the reason.
TEST_F(QueryServiceTest, IngestionTakesTurnsForEngineMemoryOrFailsWithTheReason) {
  const std::string text = std::string(900, 'm') + " The lantern is blue.";
  const std::string first = Ingest(text);
  std::string want;
  v1::AskSummary summary;
  ASSERT_TRUE(Ask(first, "What colour is the lantern?", &want, &summary).ok());
  const int64_t one = WholeStateBytes(Get(first).num_tokens());

  // Room for one document's state, not two: both documents still end READY and answer as
  // the unconstrained one did.
  services::ServerOptions options = Options();
  options.ingest_memory_bytes = one + one / 4;
  options.admission_wait_ms = 100;
  options.state_cache_bytes = 0;  // nothing cached: questions read the stored states
  StartServer(options);
  // Memory held elsewhere (here by the test) makes a document wait, let go and resume from
  // its checkpoint until the memory is free.
  services::MemoryAdmission& memory = server_->core()->ingest_admission();
  auto held = memory.Acquire(memory.budget_bytes(), absl::InfiniteFuture(), nullptr);
  ASSERT_TRUE(held.ok()) << held.status();
  const std::string waiting = StartIngest(text);
  for (int i = 0; i < 200 && memory.refused() == 0; ++i) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_GT(memory.refused(), 0);
  EXPECT_EQ(Get(waiting).status(), v1::DOCUMENT_STATUS_INGESTING);
  *held = services::MemoryAdmission::Ticket();  // release
  EXPECT_EQ(WaitIngestion(waiting).status(), v1::DOCUMENT_STATUS_READY);
  // Two documents at once, each allowed alone: both end READY.
  const std::string a = StartIngest(text), b = StartIngest(text);
  EXPECT_EQ(WaitIngestion(a).status(), v1::DOCUMENT_STATUS_READY);
  EXPECT_EQ(WaitIngestion(b).status(), v1::DOCUMENT_STATUS_READY);
  EXPECT_EQ(memory.in_use_bytes(), 0);
  for (const std::string& id : {waiting, a, b}) {
    std::string got;
    ASSERT_TRUE(Ask(id, "What colour is the lantern?", &got, &summary).ok());
    EXPECT_EQ(got, want);
  }

  // A document whose state is larger than the whole budget fails, naming the flag.
  options.ingest_memory_bytes = one / 2;
  StartServer(options);
  const v1::IngestionProgress failed = WaitIngestion(StartIngest(text));
  EXPECT_EQ(failed.status(), v1::DOCUMENT_STATUS_FAILED);
  EXPECT_THAT(failed.error(), ::testing::HasSubstr("--ingest_memory_mb"));
  EXPECT_THAT(failed.error(), ::testing::HasSubstr("ingesting this document"));
  EXPECT_EQ(failed.ingested_tokens(), 0);  // refused before any work
  EXPECT_EQ(server_->core()->ingest_admission().in_use_bytes(), 0);
}

// A document whose KV exceeds --resident_kv_limit_mb is ingested storage-backed: after each
// checkpoint its stored blocks leave engine memory and later slices fetch what they select.
// It answers exactly as a resident ingestion does, within an --ingest_memory_mb that the
// resident ingestion of the same document could never fit.
TEST_F(QueryServiceTest, IngestsADocumentLargerThanEngineMemoryStorageBacked) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "Entry " + std::to_string(i) + " of a long ledger. ";
  text += "The vault code is 27182.";
  const std::string resident_id = Ingest(text);
  std::string want;
  v1::AskSummary summary;
  ASSERT_TRUE(Ask(resident_id, "What is the vault code?", &want, &summary).ok());
  const int64_t whole = WholeStateBytes(Get(resident_id).num_tokens());

  services::ServerOptions options = Options();
  options.resident_kv_limit_bytes = 0;
  options.block_cache_bytes = kTwoTinyBlocks;
  options.host_block_cache_bytes = 0;
  options.ingest_memory_bytes = whole * 3 / 4;  // the whole state would not fit
  StartServer(options);
  const std::string id = Ingest(text);
  EXPECT_GT(server_->core()->block_cache_stats().source_reads, 0);  // slices fetched blocks
  EXPECT_EQ(server_->core()->ingest_admission().in_use_bytes(), 0);
  std::string got;
  ASSERT_TRUE(Ask(id, "What is the vault code?", &got, &summary).ok());
  EXPECT_EQ(got, want);
  StartServer(options);  // and from the store, on demand
  ASSERT_TRUE(Ask(id, "What is the vault code?", &got, &summary).ok());
  EXPECT_EQ(summary.state_source(), "store");
  EXPECT_EQ(got, want);
}

// tomed --tensor_parallel=2 (CPU ranks here): ingestion saves the sharded state in the
// one-rank layout, so a one-rank server answers the same from the store, and back.
TEST_F(QueryServiceTest, SameAnswerWithTheModelSplitOverTwoRanks) {
  services::ServerOptions options = Options();
  options.tensor_parallel = 2;
  StartServer(options);
  const std::string id = Ingest(std::string(500, 't') + " The harbour light is green.");
  std::string split, whole, split_again;
  v1::AskSummary s1, s2, s3;
  ASSERT_TRUE(Ask(id, "What colour is the light?", &split, &s1).ok());
  EXPECT_GT(s1.generated_tokens(), 0);
  EXPECT_FALSE(split.empty());
  StartServer();  // one rank, nothing cached: the state written by two ranks
  ASSERT_TRUE(Ask(id, "What colour is the light?", &whole, &s2).ok());
  EXPECT_EQ(s2.state_source(), "store");
  EXPECT_EQ(whole, split);
  const std::string second = Ingest(std::string(300, 'u') + " The tide turns at noon.");
  std::string one_rank;
  ASSERT_TRUE(Ask(second, "When does the tide turn?", &one_rank, &s2).ok());
  StartServer(options);  // two ranks again, on a state one rank wrote
  ASSERT_TRUE(Ask(second, "When does the tide turn?", &split_again, &s3).ok());
  EXPECT_EQ(s3.state_source(), "store");
  EXPECT_EQ(split_again, one_rank);

  // Two ranks opening the state on demand (two blocks per rank's cache) answer the same.
  options.tensor_parallel = 2;
  options.resident_kv_limit_bytes = 0;
  options.block_cache_bytes = kTwoTinyBlocks;
  options.host_block_cache_bytes = 0;
  StartServer(options);
  std::string on_demand;
  ASSERT_TRUE(Ask(id, "What colour is the light?", &on_demand, &s3).ok());
  EXPECT_EQ(s3.state_source(), "store");
  EXPECT_EQ(on_demand, whole);
  EXPECT_GT(server_->core()->block_cache_stats().source_reads, 0);

  options.device = "tpu";
  EXPECT_THAT(std::string(services::TomeServer::Start(options).status().message()),
              ::testing::HasSubstr("unknown device \"tpu\": use cpu or cuda"));
}

TEST_F(QueryServiceTest, BadQuestionsGetClearErrors) {
  const std::string id = Ingest("short document");
  std::string deltas;
  v1::AskSummary summary;
  EXPECT_EQ(Ask("12345", "q", &deltas, &summary).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Ask("x", "q", &deltas, &summary).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Ask(id, "", &deltas, &summary).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Ask(id, "\xc3", &deltas, &summary).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Ask(id, std::string(20000, 'q'), &deltas, &summary).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Ask(id, "q", &deltas, &summary, 1 << 20).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // An empty document cannot be asked about.
  grpc::ClientContext context;
  v1::CreateDocumentRequest create;
  create.set_name("empty");
  v1::Document empty;
  ASSERT_TRUE(documents_->CreateDocument(&context, create, &empty).ok());
  EXPECT_EQ(Ask(empty.id(), "q", &deltas, &summary).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  // Still serving.
  EXPECT_TRUE(Ask(id, "q", &deltas, &summary).ok());
}

TEST_F(QueryServiceTest, AskWaitsForIngestionToFinish) {
  grpc::ClientContext context;
  v1::CreateDocumentRequest create;
  create.set_name("fresh");
  v1::Document document;
  ASSERT_TRUE(documents_->CreateDocument(&context, create, &document).ok());
  ASSERT_TRUE(Append(document.id(), std::string(3000, 'w')).ok());
  std::string deltas;
  v1::AskSummary summary;
  ASSERT_TRUE(Ask(document.id(), "q", &deltas, &summary).ok());
  EXPECT_EQ(summary.document_tokens(), 3001);
}

}  // namespace
}  // namespace tome
