#pragma once

#include "tome/v1/documents.grpc.pb.h"
#include "request_validation.h"
#include "tome_core.h"

namespace tome::services {

v1::DocumentStatus ToProto(storage::DocumentStatus status);
void SetTimestamp(int64_t micros, google::protobuf::Timestamp* out);
// The Document message of `view` as `caller` sees it.
void FillDocument(TomeCore* core, const Principal& caller, const DocumentView& view,
                  v1::Document* out);

class DocumentServiceImpl final : public v1::DocumentService::CallbackService {
 public:
  explicit DocumentServiceImpl(TomeCore* core) : core_(core) {}

  grpc::ServerUnaryReactor* CreateDocument(grpc::CallbackServerContext* context,
                                           const v1::CreateDocumentRequest* request,
                                           v1::Document* response) override;
  grpc::ServerReadReactor<v1::AppendTextRequest>* AppendText(
      grpc::CallbackServerContext* context, v1::AppendTextResponse* response) override;
  grpc::ServerUnaryReactor* GetDocument(grpc::CallbackServerContext* context,
                                        const v1::GetDocumentRequest* request,
                                        v1::Document* response) override;
  grpc::ServerUnaryReactor* ListDocuments(grpc::CallbackServerContext* context,
                                          const v1::ListDocumentsRequest* request,
                                          v1::ListDocumentsResponse* response) override;
  grpc::ServerUnaryReactor* DeleteDocument(grpc::CallbackServerContext* context,
                                           const v1::DeleteDocumentRequest* request,
                                           v1::DeleteDocumentResponse* response) override;
  grpc::ServerUnaryReactor* ShareDocument(grpc::CallbackServerContext* context,
                                          const v1::ShareDocumentRequest* request,
                                          v1::Document* response) override;
  grpc::ServerUnaryReactor* ReingestDocument(grpc::CallbackServerContext* context,
                                             const v1::ReingestDocumentRequest* request,
                                             v1::Document* response) override;
  grpc::ServerWriteReactor<v1::IngestionProgress>* WatchIngestion(
      grpc::CallbackServerContext* context, const v1::WatchIngestionRequest* request) override;

 private:
  TomeCore* core_;
};

}  // namespace tome::services
