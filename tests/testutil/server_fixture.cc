#include "tests/testutil/server_fixture.h"

namespace tome::testing {

grpc::Status ServerTest::Append(const std::string& id, const std::string& text,
                                v1::AppendTextResponse* response) {
  v1::AppendTextResponse local;
  grpc::ClientContext context;
  auto writer = documents_->AppendText(&context, response ? response : &local);
  v1::AppendTextRequest request;
  request.set_document_id(id);
  request.set_text(text);
  writer->Write(request);
  writer->WritesDone();
  return writer->Finish();
}

std::string ServerTest::StartIngest(const std::string& text) {
  grpc::ClientContext context;
  v1::CreateDocumentRequest create;
  create.set_name("doc");
  v1::Document document;
  EXPECT_TRUE(documents_->CreateDocument(&context, create, &document).ok());
  EXPECT_TRUE(Append(document.id(), text).ok());
  return document.id();
}

v1::IngestionProgress ServerTest::WaitIngestion(const std::string& id) {
  grpc::ClientContext context;
  v1::WatchIngestionRequest watch;
  watch.set_document_id(id);
  auto reader = documents_->WatchIngestion(&context, watch);
  v1::IngestionProgress progress;
  while (reader->Read(&progress)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
  return progress;
}

std::string ServerTest::Ingest(const std::string& text) {
  const std::string id = StartIngest(text);
  const v1::IngestionProgress progress = WaitIngestion(id);
  EXPECT_EQ(progress.status(), v1::DOCUMENT_STATUS_READY) << progress.error();
  return id;
}

grpc::Status ServerTest::Ask(const std::string& id, const std::string& question,
                             std::string* deltas, v1::AskSummary* summary, int max_tokens) {
  grpc::ClientContext context;
  v1::AskRequest request;
  request.set_document_id(id);
  request.set_question(question);
  request.set_max_tokens(max_tokens);
  auto reader = queries_->Ask(&context, request);
  v1::AskResponse response;
  deltas->clear();
  while (reader->Read(&response)) {
    if (response.has_delta()) *deltas += response.delta().text();
    if (response.has_summary()) *summary = response.summary();
  }
  return reader->Finish();
}

v1::Document ServerTest::Get(const std::string& id) {
  grpc::ClientContext context;
  v1::GetDocumentRequest request;
  request.set_document_id(id);
  v1::Document document;
  EXPECT_TRUE(documents_->GetDocument(&context, request, &document).ok());
  return document;
}

}  // namespace tome::testing
