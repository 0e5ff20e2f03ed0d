// Scheduling and evidence: decode steps of concurrent answers share batched passes, a big
// ingestion does not hold questions up, and answers cite spans of the document.
#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/testutil/server_fixture.h"
#include "tome_core.h"

namespace tome {
namespace {

class SchedulingTest : public testing::ServerTest {};

TEST_F(SchedulingTest, ConcurrentAnswersShareDecodeBatches) {
  const std::string doc = Ingest(std::string(2000, 'b') + " batching");
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      std::string answer;
      v1::AskSummary summary;
      grpc::ClientContext context;
      v1::AskRequest request;
      request.set_document_id(doc);
      request.set_question("q" + std::to_string(i));
      request.set_max_tokens(40);
      auto reader = queries_->Ask(&context, request);
      v1::AskResponse response;
      while (reader->Read(&response)) {
      }
      if (reader->Finish().ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 6);
  const services::SchedulerStats stats = server_->core()->scheduler().stats();
  EXPECT_GT(stats.max_batch, 1) << "concurrent answers never shared a forward pass";
  EXPECT_LT(stats.decode_batches, stats.decode_steps);
}

TEST_F(SchedulingTest, QuestionsFlowDuringABigIngestion) {
  const std::string small = Ingest("A small document.");
  // A large ingestion starts...
  grpc::ClientContext context;
  v1::CreateDocumentRequest create;
  create.set_name("big");
  v1::Document big;
  ASSERT_TRUE(documents_->CreateDocument(&context, create, &big).ok());
  ASSERT_TRUE(Append(big.id(), std::string(60000, 'z')).ok());
  // ...and a question about another document is answered long before it ends.
  std::string answer;
  v1::AskSummary summary;
  ASSERT_TRUE(Ask(small, "still there?", &answer, &summary, 4).ok());
  const v1::Document during = Get(big.id());
  EXPECT_LT(during.ingested_tokens(), during.num_tokens())
      << "the question waited for the whole ingestion";
  EXPECT_GT(server_->core()->scheduler().stats().prefill_chunks, 0);
}

TEST_F(SchedulingTest, AnswersCiteSpansOfTheDocument) {
  // The tiny preset's 3 blocks per query are all forced: give it 2 blocks of free choice.
  engine::ModelConfig config = testing::TinyConfig();
  config.sparse.topk = 4;
  testing::WriteModel(config, model_dir_, 3);
  StartServer();
  grpc::ClientContext context;
  v1::CreateDocumentRequest create;
  create.set_name("code");
  v1::Document doc;
  ASSERT_TRUE(documents_->CreateDocument(&context, create, &doc).ok());
  std::string full;
  {
    grpc::ClientContext append_context;
    v1::AppendTextResponse response;
    auto writer = documents_->AppendText(&append_context, &response);
    for (int f = 0; f < 6; ++f) {
      v1::AppendTextRequest piece;
      if (f == 0) piece.set_document_id(doc.id());
      piece.set_section("src/file" + std::to_string(f) + ".c");
      std::string text = "=== File: src/file" + std::to_string(f) + ".c ===\n";
      for (int line = 0; line < 40; ++line) text += "int value_" + std::to_string(f * 100 + line) + " = 1;\n";
      piece.set_text(text);
      full += text;
      writer->Write(piece);
    }
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
  }
  grpc::ClientContext watch_context;
  v1::WatchIngestionRequest watch;
  watch.set_document_id(doc.id());
  auto reader = documents_->WatchIngestion(&watch_context, watch);
  v1::IngestionProgress progress;
  while (reader->Read(&progress)) {
  }
  ASSERT_TRUE(reader->Finish().ok());

  std::string answer;
  v1::AskSummary summary;
  ASSERT_TRUE(Ask(doc.id(), "Where is value_205 defined?", &answer, &summary, 16).ok());
  ASSERT_GT(summary.citations_size(), 0);
  EXPECT_LE(summary.citations_size(), 3);
  double weights = 0;
  for (const v1::Citation& c : summary.citations()) {
    ASSERT_LT(c.byte_begin(), c.byte_end());
    ASSERT_LE(c.byte_end(), static_cast<int64_t>(full.size()));
    // A block is 64 byte-level tokens: 64 bytes of the text, quoted exactly.
    EXPECT_EQ(c.byte_end() - c.byte_begin(), 64);
    EXPECT_EQ(c.snippet(), full.substr(c.byte_begin(), c.byte_end() - c.byte_begin()));
    const int64_t line = 1 + std::count(full.begin(), full.begin() + c.byte_begin(), '\n');
    EXPECT_EQ(c.line_begin(), line);
    // The section is the file whose text holds the span.
    const size_t header = full.rfind("=== File: ", c.byte_begin());
    if (header != std::string::npos) {
      const size_t name_end = full.find(" ===", header);
      EXPECT_EQ(c.section(), full.substr(header + 10, name_end - header - 10));
    }
    EXPECT_GT(c.weight(), 0);
    weights += c.weight();
  }
  EXPECT_LE(weights, 1.0 + 1e-9);
}

}  // namespace
}  // namespace tome
