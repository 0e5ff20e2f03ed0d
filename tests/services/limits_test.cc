// The server's limits, each through gRPC: message size (every call), document size (also
// when streamed in pieces), question length, tokens generated, concurrent calls (streams
// included) per tenant, session TTLs.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/testutil/server_fixture.h"
#include "tome/v1/admin.grpc.pb.h"
#include "tome_core.h"

namespace tome {
namespace {

class LimitsTest : public testing::ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    admin_ = v1::AdminService::NewStub(server_->InProcessChannel(admin_key_));
  }

  grpc::Status SetQuotas(const std::string& tenant, const v1::Quotas& quotas) {
    grpc::ClientContext context;
    v1::SetQuotasRequest request;
    request.set_tenant_id(tenant);
    *request.mutable_quotas() = quotas;
    v1::Tenant out;
    return admin_->SetQuotas(&context, request, &out);
  }

  grpc::Status AskOnce(const std::string& id, const std::string& question, int max_tokens,
                       v1::AskSummary* summary = nullptr) {
    grpc::ClientContext context;
    v1::AskRequest request;
    request.set_document_id(id);
    request.set_question(question);
    request.set_max_tokens(max_tokens);
    auto reader = queries_->Ask(&context, request);
    v1::AskResponse response;
    while (reader->Read(&response)) {
      if (summary && response.has_summary()) *summary = response.summary();
    }
    return reader->Finish();
  }

  std::unique_ptr<v1::AdminService::Stub> admin_;
};

TEST_F(LimitsTest, EveryCallHasAMessageSizeLimit) {
  // 4 MiB by default: a unary request over it is refused by gRPC before any handler runs.
  grpc::ClientContext context;
  v1::CreateDocumentRequest create;
  create.set_name(std::string(5 << 20, 'n'));
  v1::Document document;
  EXPECT_EQ(documents_->CreateDocument(&context, create, &document).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  const std::string id = Ingest("a short text");
  EXPECT_EQ(AskOnce(id, std::string(5 << 20, 'q'), 4).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(AskOnce(id, "still serving?", 4).ok());
}

TEST_F(LimitsTest, DocumentSizeIsLimitedAcrossStreamedPieces) {
  grpc::ClientContext create_context;
  v1::CreateDocumentRequest create;
  create.set_name("pieces");
  v1::Document document;
  ASSERT_TRUE(documents_->CreateDocument(&create_context, create, &document).ok());
  // Three pieces of 400 KB, each under the message limit, together over the fixture's 1 MiB.
  grpc::ClientContext context;
  v1::AppendTextResponse response;
  auto writer = documents_->AppendText(&context, &response);
  for (int i = 0; i < 3; ++i) {
    v1::AppendTextRequest piece;
    piece.set_document_id(document.id());
    piece.set_text(std::string(400000, 'p'));
    if (!writer->Write(piece)) break;  // the server may already have refused the stream
  }
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "limit")) << status.error_message();
  EXPECT_EQ(Get(document.id()).text_bytes(), 0);  // nothing of it was stored
}

TEST_F(LimitsTest, QuestionLengthAndGeneratedTokens) {
  const std::string id = Ingest("The keeper wrote in the ledger every night.");
  grpc::Status status = AskOnce(id, std::string((16 << 10) + 1, 'q'), 4);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "limit is 16384"))
      << status.error_message();
  status = AskOnce(id, "q", 4097);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "max_tokens")) << status.error_message();
  status = AskOnce(id, "q", -1);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Generation stops at max_tokens.
  v1::AskSummary summary;
  ASSERT_TRUE(AskOnce(id, "Who wrote?", 7, &summary).ok());
  EXPECT_LE(summary.generated_tokens(), 7);
  EXPECT_GT(summary.generated_tokens(), 0);
}

TEST_F(LimitsTest, ConcurrentCallsPerTenantIncludeOpenStreams) {
  const std::string id = Ingest("Two streams at a time, no more.");
  v1::Quotas quotas;
  quotas.set_max_concurrent_requests(2);
  ASSERT_TRUE(SetQuotas("1", quotas).ok());
  // Two AppendText streams left open (a message sent, no WritesDone) hold both slots.
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientWriter<v1::AppendTextRequest>>> streams;
  v1::AppendTextResponse responses[2];
  for (int i = 0; i < 2; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(documents_->AppendText(contexts.back().get(), &responses[i]));
    v1::AppendTextRequest piece;
    piece.set_document_id(id);
    piece.set_text(" held");
    ASSERT_TRUE(streams.back()->Write(piece));
  }
  services::TomeCore* core = server_->core();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (core->usage().concurrent(1) < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(core->usage().concurrent(1), 2);
  // A third call of any kind, streaming or not, is refused and names the quota.
  grpc::Status status = AskOnce(id, "q", 2);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "max_concurrent_requests"))
      << status.error_message();
  {
    grpc::ClientContext context;
    v1::WatchIngestionRequest watch;
    watch.set_document_id(id);
    auto reader = documents_->WatchIngestion(&context, watch);
    v1::IngestionProgress progress;
    while (reader->Read(&progress)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  grpc::ClientContext get_context;
  v1::GetDocumentRequest get;
  get.set_document_id(id);
  v1::Document document;
  EXPECT_EQ(documents_->GetDocument(&get_context, get, &document).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Finishing one stream frees its slot.
  streams[0]->WritesDone();
  EXPECT_TRUE(streams[0]->Finish().ok());
  EXPECT_TRUE(AskOnce(id, "q", 2).ok());
  streams[1]->WritesDone();
  EXPECT_TRUE(streams[1]->Finish().ok());
}

TEST_F(LimitsTest, QuotasAreValidated) {
  v1::Quotas quotas;
  quotas.set_session_ttl_seconds(int64_t{1} << 62);  // would overflow expiry times
  grpc::Status status = SetQuotas("1", quotas);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "session_ttl_seconds"));
  quotas.set_session_ttl_seconds(0);
  quotas.set_max_documents(-1);
  EXPECT_EQ(SetQuotas("1", quotas).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext context;
  v1::CreateTenantRequest create;
  create.set_name("negative");
  create.mutable_quotas()->set_max_concurrent_requests(-5);
  v1::Tenant tenant;
  EXPECT_EQ(admin_->CreateTenant(&context, create, &tenant).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace tome
