// Tenancy over real gRPC: API keys, isolation between tenants, sharing, quotas.
#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "tests/testutil/server_fixture.h"
#include "tome/v1/admin.grpc.pb.h"
#include "tome/v1/sessions.grpc.pb.h"
#include "tome_core.h"

namespace tome {
namespace {

class TenancyTest : public testing::ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    admin_ = v1::AdminService::NewStub(server_->InProcessChannel(admin_key_));
  }

  // A new tenant and stubs that act as it.
  struct TenantClient {
    std::string id;
    std::string key_id;
    std::unique_ptr<v1::DocumentService::Stub> documents;
    std::unique_ptr<v1::QueryService::Stub> queries;
    std::unique_ptr<v1::SessionService::Stub> sessions;
  };
  TenantClient NewTenant(const std::string& name) {
    grpc::ClientContext c1;
    v1::CreateTenantRequest create;
    create.set_name(name);
    v1::Tenant tenant;
    EXPECT_TRUE(admin_->CreateTenant(&c1, create, &tenant).ok());
    grpc::ClientContext c2;
    v1::CreateApiKeyRequest key_request;
    key_request.set_tenant_id(tenant.id());
    v1::ApiKey key;
    EXPECT_TRUE(admin_->CreateApiKey(&c2, key_request, &key).ok());
    EXPECT_FALSE(key.secret().empty());
    auto channel = server_->InProcessChannel(key.secret());
    return {tenant.id(), key.key_id(), v1::DocumentService::NewStub(channel),
            v1::QueryService::NewStub(channel), v1::SessionService::NewStub(channel)};
  }

  grpc::Status GetAs(v1::DocumentService::Stub& stub, const std::string& id, v1::Document* out) {
    grpc::ClientContext context;
    v1::GetDocumentRequest request;
    request.set_document_id(id);
    return stub.GetDocument(&context, request, out);
  }
  grpc::Status AskAs(v1::QueryService::Stub& stub, const std::string& id,
                     const std::string& session = "") {
    grpc::ClientContext context;
    v1::AskRequest request;
    if (session.empty()) request.set_document_id(id);
    request.set_session_id(session);
    request.set_question("who?");
    request.set_max_tokens(4);
    auto reader = stub.Ask(&context, request);
    v1::AskResponse response;
    while (reader->Read(&response)) {
    }
    return reader->Finish();
  }
  grpc::Status SetQuotas(const std::string& tenant, const v1::Quotas& quotas) {
    grpc::ClientContext context;
    v1::SetQuotasRequest request;
    request.set_tenant_id(tenant);
    *request.mutable_quotas() = quotas;
    v1::Tenant out;
    return admin_->SetQuotas(&context, request, &out);
  }

  std::unique_ptr<v1::AdminService::Stub> admin_;
};

TEST_F(TenancyTest, KeysAreRequiredAndChecked) {
  auto anonymous = v1::DocumentService::NewStub(server_->InProcessChannel());
  v1::Document doc;
  EXPECT_EQ(GetAs(*anonymous, "1", &doc).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  auto forged = v1::DocumentService::NewStub(server_->InProcessChannel("tome_not_a_key"));
  EXPECT_EQ(GetAs(*forged, "1", &doc).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // A tenant key cannot administer; the admin key owns no documents.
  auto tenant_admin = v1::AdminService::NewStub(channel_);
  grpc::ClientContext context;
  v1::ListTenantsResponse tenants;
  EXPECT_EQ(tenant_admin->ListTenants(&context, {}, &tenants).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  auto admin_documents = v1::DocumentService::NewStub(server_->InProcessChannel(admin_key_));
  EXPECT_EQ(GetAs(*admin_documents, "1", &doc).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // Revoked keys stop working at once.
  TenantClient b = NewTenant("b");
  EXPECT_EQ(GetAs(*b.documents, "1", &doc).error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext revoke_context;
  v1::RevokeApiKeyRequest revoke;
  revoke.set_key_id(b.key_id);
  v1::RevokeApiKeyResponse revoked;
  ASSERT_TRUE(admin_->RevokeApiKey(&revoke_context, revoke, &revoked).ok());
  EXPECT_EQ(GetAs(*b.documents, "1", &doc).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(TenancyTest, PrivateDocumentsAreInvisibleToOtherTenants) {
  const std::string mine = Ingest("Tenant A's private notes.");
  TenantClient b = NewTenant("b");
  v1::Document doc;
  const grpc::Status hidden = GetAs(*b.documents, mine, &doc);
  const grpc::Status absent = GetAs(*b.documents, "424242", &doc);
  EXPECT_EQ(hidden.error_code(), grpc::StatusCode::NOT_FOUND);
  // Nothing tells an existing private document from a missing one but the id itself.
  EXPECT_EQ(hidden.error_message(), "document " + mine + " not found");
  EXPECT_EQ(absent.error_message(), "document 424242 not found");
  EXPECT_EQ(AskAs(*b.queries, mine).error_code(), grpc::StatusCode::NOT_FOUND);
  {
    grpc::ClientContext context;
    v1::DeleteDocumentRequest request;
    request.set_document_id(mine);
    v1::DeleteDocumentResponse response;
    EXPECT_EQ(b.documents->DeleteDocument(&context, request, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext context;
    v1::CreateSessionRequest request;
    request.set_document_id(mine);
    v1::Session session;
    EXPECT_EQ(b.sessions->CreateSession(&context, request, &session).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext context;
    v1::ListDocumentsRequest request;
    request.set_include_shared(true);
    v1::ListDocumentsResponse response;
    ASSERT_TRUE(b.documents->ListDocuments(&context, request, &response).ok());
    EXPECT_EQ(response.documents_size(), 0);
  }
  {
    grpc::ClientContext context;
    v1::WatchIngestionRequest request;
    request.set_document_id(mine);
    auto reader = b.documents->WatchIngestion(&context, request);
    v1::IngestionProgress progress;
    EXPECT_FALSE(reader->Read(&progress));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }
  // A's sessions are B's to neither see nor use.
  grpc::ClientContext context;
  v1::CreateSessionRequest request;
  request.set_document_id(mine);
  v1::Session session;
  ASSERT_TRUE(v1::SessionService::NewStub(channel_)->CreateSession(&context, request, &session).ok());
  grpc::ClientContext get_context;
  v1::GetSessionRequest get;
  get.set_session_id(session.id());
  v1::Session seen;
  EXPECT_EQ(b.sessions->GetSession(&get_context, get, &seen).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(AskAs(*b.queries, "", session.id()).error_code(), grpc::StatusCode::NOT_FOUND);
}

// A probe by another tenant must not reveal whether a private document's state is cached
// (a timing side channel): the probe is refused before any cache is consulted, with the
// same answer whether the state is cold, warm, or the document does not exist.
TEST_F(TenancyTest, ProbesCannotObserveAPrivateDocumentsCacheState) {
  const std::string mine = Ingest("Tenant A's private notes, asked about often.");
  StartServer();  // nothing cached
  admin_ = v1::AdminService::NewStub(server_->InProcessChannel(admin_key_));
  TenantClient b = NewTenant("b");
  const services::DocumentStateCache& cache = server_->core()->state_cache();
  auto counters = [&] { return std::pair{cache.hits(), cache.misses()}; };

  const auto before_cold = counters();
  const grpc::Status cold = AskAs(*b.queries, mine);
  EXPECT_EQ(counters(), before_cold) << "a refused probe reached the state cache";

  std::string deltas;
  v1::AskSummary summary;
  ASSERT_TRUE(Ask(mine, "What are these?", &deltas, &summary).ok());
  EXPECT_EQ(summary.state_source(), "store");
  const auto before_warm = counters();
  const grpc::Status warm = AskAs(*b.queries, mine);
  EXPECT_EQ(counters(), before_warm) << "a refused probe reached the state cache";
  const grpc::Status absent = AskAs(*b.queries, "424242");

  EXPECT_EQ(cold.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(warm.error_code(), cold.error_code());
  EXPECT_EQ(warm.error_message(), cold.error_message());
  EXPECT_EQ(absent.error_code(), cold.error_code());
  EXPECT_EQ(absent.error_message(),
            absl::StrReplaceAll(cold.error_message(), {{mine, "424242"}}));
  // And the probes did not disturb A: its state is still cached.
  ASSERT_TRUE(Ask(mine, "What are these?", &deltas, &summary).ok());
  EXPECT_EQ(summary.state_source(), "memory");
}

TEST_F(TenancyTest, SharedDocumentsAreReadOnly) {
  const std::string doc_id = Ingest("A document to share.");
  TenantClient b = NewTenant("b");
  TenantClient c = NewTenant("c");
  {
    grpc::ClientContext context;
    v1::ShareDocumentRequest share;
    share.set_document_id(doc_id);
    share.add_tenant_ids(b.id);
    v1::Document shared;
    ASSERT_TRUE(documents_->ShareDocument(&context, share, &shared).ok());
    ASSERT_EQ(shared.shared_with_tenant_ids_size(), 1);
  }
  v1::Document seen;
  ASSERT_TRUE(GetAs(*b.documents, doc_id, &seen).ok());
  EXPECT_FALSE(seen.owned());
  EXPECT_EQ(seen.shared_with_tenant_ids_size(), 0);  // sharing is the owner's business
  EXPECT_EQ(seen.stored_bytes(), 0);
  EXPECT_TRUE(AskAs(*b.queries, doc_id).ok());
  EXPECT_EQ(GetAs(*c.documents, doc_id, &seen).error_code(), grpc::StatusCode::NOT_FOUND);
  {
    grpc::ClientContext context;
    v1::AppendTextResponse response;
    auto writer = b.documents->AppendText(&context, &response);
    v1::AppendTextRequest piece;
    piece.set_document_id(doc_id);
    piece.set_text("vandalism");
    writer->Write(piece);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext context;
    v1::ListDocumentsRequest request;
    request.set_include_shared(true);
    v1::ListDocumentsResponse response;
    ASSERT_TRUE(b.documents->ListDocuments(&context, request, &response).ok());
    ASSERT_EQ(response.documents_size(), 1);
    EXPECT_FALSE(response.documents(0).owned());
  }
  // Public: everyone reads it.
  grpc::ClientContext context;
  v1::ShareDocumentRequest share;
  share.set_document_id(doc_id);
  share.set_public_(true);
  v1::Document shared;
  ASSERT_TRUE(documents_->ShareDocument(&context, share, &shared).ok());
  EXPECT_TRUE(GetAs(*c.documents, doc_id, &seen).ok());
  EXPECT_EQ(GetAs(*b.documents, doc_id, &seen).error_code(), grpc::StatusCode::OK);
}

TEST_F(TenancyTest, QuotasFailWithTheirName) {
  TenantClient b = NewTenant("b");
  v1::Quotas quotas;
  quotas.set_max_documents(1);
  ASSERT_TRUE(SetQuotas(b.id, quotas).ok());
  auto create = [&](const std::string& name) {
    grpc::ClientContext context;
    v1::CreateDocumentRequest request;
    request.set_name(name);
    v1::Document doc;
    grpc::Status status = b.documents->CreateDocument(&context, request, &doc);
    return std::make_pair(status, doc.id());
  };
  auto [first, id] = create("one");
  ASSERT_TRUE(first.ok());
  const grpc::Status second = create("two").first;
  EXPECT_EQ(second.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(second.error_message(), "max_documents")) << second.error_message();

  auto append = [&](const std::string& text) {
    grpc::ClientContext context;
    v1::AppendTextResponse response;
    auto writer = b.documents->AppendText(&context, &response);
    v1::AppendTextRequest piece;
    piece.set_document_id(id);
    piece.set_text(text);
    writer->Write(piece);
    writer->WritesDone();
    return writer->Finish();
  };
  quotas.set_max_tokens_per_minute(100);
  ASSERT_TRUE(SetQuotas(b.id, quotas).ok());
  grpc::Status status = append(std::string(300, 't'));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "max_tokens_per_minute"));
  EXPECT_TRUE(append(std::string(50, 't')).ok());

  quotas.set_max_tokens_per_minute(0);
  quotas.set_max_stored_bytes(10000);
  ASSERT_TRUE(SetQuotas(b.id, quotas).ok());
  status = append(std::string(5000, 's'));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "max_stored_bytes"));

  // Tenant A is not affected by B's quotas.
  EXPECT_FALSE(Ingest(std::string(5000, 'a')).empty());
}

}  // namespace
}  // namespace tome
