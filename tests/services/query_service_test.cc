// QueryService over an in-process channel.
#include "gtest/gtest.h"
#include "tests/testutil/server_fixture.h"

namespace tome {
namespace {

class QueryServiceTest : public testing::ServerTest {};

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
