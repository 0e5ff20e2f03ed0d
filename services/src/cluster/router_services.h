// The public API on a router: DocumentService, QueryService, SessionService and
// AdminService, each authenticating the caller, then forwarding to the worker that serves
// the document (Router::OnDocument), fanning out to all workers for listings, or answering
// from etcd (tenants and keys). Synchronous gRPC services: a forwarded call blocks one of
// the server's threads while the worker works. Thread-safe.
#pragma once

#include "cluster/router.h"
#include "tome/v1/admin.grpc.pb.h"
#include "tome/v1/documents.grpc.pb.h"
#include "tome/v1/query.grpc.pb.h"
#include "tome/v1/sessions.grpc.pb.h"

namespace tome::services::cluster {

class RouterDocumentService final : public v1::DocumentService::Service {
 public:
  explicit RouterDocumentService(Router* router) : router_(router) {}

  grpc::Status CreateDocument(grpc::ServerContext* context,
                              const v1::CreateDocumentRequest* request,
                              v1::Document* response) override;
  grpc::Status AppendText(grpc::ServerContext* context,
                          grpc::ServerReader<v1::AppendTextRequest>* reader,
                          v1::AppendTextResponse* response) override;
  grpc::Status GetDocument(grpc::ServerContext* context, const v1::GetDocumentRequest* request,
                           v1::Document* response) override;
  grpc::Status ListDocuments(grpc::ServerContext* context, const v1::ListDocumentsRequest* request,
                             v1::ListDocumentsResponse* response) override;
  grpc::Status DeleteDocument(grpc::ServerContext* context,
                              const v1::DeleteDocumentRequest* request,
                              v1::DeleteDocumentResponse* response) override;
  grpc::Status ShareDocument(grpc::ServerContext* context, const v1::ShareDocumentRequest* request,
                             v1::Document* response) override;
  grpc::Status WatchIngestion(grpc::ServerContext* context,
                              const v1::WatchIngestionRequest* request,
                              grpc::ServerWriter<v1::IngestionProgress>* writer) override;
  grpc::Status ReingestDocument(grpc::ServerContext* context,
                                const v1::ReingestDocumentRequest* request,
                                v1::Document* response) override;

 private:
  Router* router_;
};

class RouterQueryService final : public v1::QueryService::Service {
 public:
  explicit RouterQueryService(Router* router) : router_(router) {}

  grpc::Status Ask(grpc::ServerContext* context, const v1::AskRequest* request,
                   grpc::ServerWriter<v1::AskResponse>* writer) override;

 private:
  Router* router_;
};

class RouterSessionService final : public v1::SessionService::Service {
 public:
  explicit RouterSessionService(Router* router) : router_(router) {}

  grpc::Status CreateSession(grpc::ServerContext* context, const v1::CreateSessionRequest* request,
                             v1::Session* response) override;
  grpc::Status GetSession(grpc::ServerContext* context, const v1::GetSessionRequest* request,
                          v1::Session* response) override;
  grpc::Status ListSessions(grpc::ServerContext* context, const v1::ListSessionsRequest* request,
                            v1::ListSessionsResponse* response) override;
  grpc::Status ForkSession(grpc::ServerContext* context, const v1::ForkSessionRequest* request,
                           v1::Session* response) override;
  grpc::Status DeleteSession(grpc::ServerContext* context, const v1::DeleteSessionRequest* request,
                             v1::DeleteSessionResponse* response) override;

 private:
  Router* router_;
};

class RouterAdminService final : public v1::AdminService::Service {
 public:
  explicit RouterAdminService(Router* router) : router_(router) {}

  grpc::Status CreateTenant(grpc::ServerContext* context, const v1::CreateTenantRequest* request,
                            v1::Tenant* response) override;
  grpc::Status GetTenant(grpc::ServerContext* context, const v1::GetTenantRequest* request,
                         v1::Tenant* response) override;
  grpc::Status ListTenants(grpc::ServerContext* context, const v1::ListTenantsRequest* request,
                           v1::ListTenantsResponse* response) override;
  grpc::Status SetQuotas(grpc::ServerContext* context, const v1::SetQuotasRequest* request,
                         v1::Tenant* response) override;
  grpc::Status CreateApiKey(grpc::ServerContext* context, const v1::CreateApiKeyRequest* request,
                            v1::ApiKey* response) override;
  grpc::Status ListApiKeys(grpc::ServerContext* context, const v1::ListApiKeysRequest* request,
                           v1::ListApiKeysResponse* response) override;
  grpc::Status RevokeApiKey(grpc::ServerContext* context, const v1::RevokeApiKeyRequest* request,
                            v1::RevokeApiKeyResponse* response) override;

 private:
  // Usage summed over the live workers, by tenant id.
  std::map<std::string, v1::Usage> UsageByTenant(grpc::ServerContext* context,
                                                 const Caller& caller);
  Router* router_;
};

}  // namespace tome::services::cluster
