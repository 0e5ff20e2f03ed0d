// DocumentService over an in-process channel: every RPC, its errors, and persistence.
#include "gtest/gtest.h"
#include "tests/testutil/server_fixture.h"

namespace tome {
namespace {

class DocumentServiceTest : public testing::ServerTest {};

TEST_F(DocumentServiceTest, CreateGetListDelete) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    grpc::ClientContext context;
    v1::CreateDocumentRequest request;
    request.set_name("doc " + std::to_string(i));
    v1::Document document;
    ASSERT_TRUE(documents_->CreateDocument(&context, request, &document).ok());
    EXPECT_EQ(document.status(), v1::DOCUMENT_STATUS_EMPTY);
    EXPECT_EQ(document.name(), "doc " + std::to_string(i));
    ids.push_back(document.id());
  }
  EXPECT_EQ(Get(ids[2]).name(), "doc 2");

  // Pages of two.
  std::vector<std::string> listed;
  std::string token;
  int pages = 0;
  do {
    grpc::ClientContext context;
    v1::ListDocumentsRequest request;
    request.set_page_size(2);
    request.set_page_token(token);
    v1::ListDocumentsResponse response;
    ASSERT_TRUE(documents_->ListDocuments(&context, request, &response).ok());
    for (const auto& d : response.documents()) listed.push_back(d.id());
    token = response.next_page_token();
    ++pages;
  } while (!token.empty());
  EXPECT_EQ(listed, ids);
  EXPECT_EQ(pages, 3);

  grpc::ClientContext context;
  v1::DeleteDocumentRequest del;
  del.set_document_id(ids[1]);
  v1::DeleteDocumentResponse deleted;
  ASSERT_TRUE(documents_->DeleteDocument(&context, del, &deleted).ok());
  grpc::ClientContext get_context;
  v1::GetDocumentRequest get;
  get.set_document_id(ids[1]);
  v1::Document document;
  EXPECT_EQ(documents_->GetDocument(&get_context, get, &document).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(DocumentServiceTest, AppendIngestsAndWatchReportsProgress) {
  grpc::ClientContext context;
  v1::CreateDocumentRequest create;
  create.set_name("book");
  v1::Document document;
  ASSERT_TRUE(documents_->CreateDocument(&context, create, &document).ok());
  // A text split mid-character across stream messages is reassembled before validation.
  const std::string text = std::string(1500, 'a') + "é" + std::string(500, 'b');
  v1::AppendTextResponse response;
  {
    grpc::ClientContext append_context;
    auto writer = documents_->AppendText(&append_context, &response);
    v1::AppendTextRequest piece;
    piece.set_document_id(document.id());
    piece.set_text(text.substr(0, 1501));  // ends inside "é"
    ASSERT_TRUE(writer->Write(piece));
    piece.clear_document_id();
    piece.set_text(text.substr(1501));
    ASSERT_TRUE(writer->Write(piece));
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
  }
  EXPECT_EQ(response.appended_bytes(), static_cast<int64_t>(text.size()));
  EXPECT_EQ(response.appended_tokens(), static_cast<int64_t>(text.size()) + 1);  // + BOS
  EXPECT_EQ(response.document().version(), 1);

  grpc::ClientContext watch_context;
  v1::WatchIngestionRequest watch;
  watch.set_document_id(document.id());
  auto reader = documents_->WatchIngestion(&watch_context, watch);
  v1::IngestionProgress progress;
  std::vector<int64_t> watermarks;
  while (reader->Read(&progress)) watermarks.push_back(progress.ingested_tokens());
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(progress.status(), v1::DOCUMENT_STATUS_READY);
  EXPECT_EQ(watermarks.back(), response.appended_tokens());
  EXPECT_TRUE(std::is_sorted(watermarks.begin(), watermarks.end()));

  const v1::Document ready = Get(document.id());
  EXPECT_EQ(ready.ingested_tokens(), ready.num_tokens());
  EXPECT_GT(ready.stored_bytes(), 0);
}

TEST_F(DocumentServiceTest, BadRequestsGetClearErrorsAndTheServerKeepsWorking) {
  v1::AppendTextResponse response;
  // Unknown document.
  grpc::Status status = Append("999", "hello", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(status.error_message().find("999"), std::string::npos) << status.error_message();
  // Malformed id.
  EXPECT_EQ(Append("abc", "hello").error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  grpc::ClientContext context;
  v1::CreateDocumentRequest create;
  v1::Document document;
  EXPECT_EQ(documents_->CreateDocument(&context, create, &document).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // empty name
  grpc::ClientContext context2;
  create.set_name("doc");
  ASSERT_TRUE(documents_->CreateDocument(&context2, create, &document).ok());

  // Empty text, invalid UTF-8, too large for this server (1 MiB limit in the fixture).
  status = Append(document.id(), "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  status = Append(document.id(), "abc\xff\xfe");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("UTF-8"), std::string::npos);
  status = Append(document.id(), std::string((1 << 20) + 1, 'x'));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // A single message over the gRPC message limit (4 MiB) is refused by gRPC itself.
  status = Append(document.id(), std::string(5 << 20, 'x'));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // A stream whose first message lacks the id.
  {
    grpc::ClientContext append_context;
    auto writer = documents_->AppendText(&append_context, &response);
    v1::AppendTextRequest piece;
    piece.set_text("no id");
    writer->Write(piece);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // Nothing above changed the document, and the server still works.
  EXPECT_EQ(Get(document.id()).version(), 0);
  const std::string id = Ingest("The server still works.");
  EXPECT_EQ(Get(id).status(), v1::DOCUMENT_STATUS_READY);
}

TEST_F(DocumentServiceTest, DocumentsSurviveARestart) {
  const std::string id = Ingest(std::string(700, 'z'));
  const v1::Document before = Get(id);
  StartServer();
  const v1::Document after = Get(id);
  EXPECT_EQ(after.status(), v1::DOCUMENT_STATUS_READY);
  EXPECT_EQ(after.num_tokens(), before.num_tokens());
  EXPECT_EQ(after.version(), before.version());
}

}  // namespace
}  // namespace tome
