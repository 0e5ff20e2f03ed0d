#include "admin_service.h"

#include "absl/strings/str_cat.h"
#include "auth/call_auth.h"
#include "document_service.h"
#include "status_util.h"
#include "tome/base/status_macros.h"

namespace tome::services {
namespace {

Quotas FromProto(const v1::Quotas& q) {
  return Quotas{q.max_stored_bytes(), q.max_documents(), q.max_concurrent_requests(),
                q.max_tokens_per_minute(), q.session_ttl_seconds()};
}

void ToProto(const ApiKeyInfo& k, v1::ApiKey* out) {
  out->set_key_id(k.key_id);
  out->set_tenant_id(absl::StrCat(k.tenant));
  out->set_name(k.name);
  SetTimestamp(k.created_micros, out->mutable_create_time());
  out->set_revoked(k.revoked);
}

}  // namespace

void AdminServiceImpl::Fill(const TenantInfo& t, v1::Tenant* out) {
  out->set_id(absl::StrCat(t.id));
  out->set_name(t.name);
  v1::Quotas* q = out->mutable_quotas();
  q->set_max_stored_bytes(t.quotas.max_stored_bytes);
  q->set_max_documents(t.quotas.max_documents);
  q->set_max_concurrent_requests(t.quotas.max_concurrent_requests);
  q->set_max_tokens_per_minute(t.quotas.max_tokens_per_minute);
  q->set_session_ttl_seconds(t.quotas.session_ttl_seconds);
  v1::Usage* u = out->mutable_usage();
  u->set_concurrent_requests(core_->usage().concurrent(t.id));
  u->set_tokens_last_minute(core_->usage().tokens_last_minute(t.id));
  Principal as_tenant{t.id, false};
  if (auto docs = core_->ListDocuments(as_tenant, 0, 1 << 30, false); docs.ok()) {
    u->set_documents(static_cast<int64_t>(docs->size()));
    int64_t bytes = 0;
    for (const DocumentView& d : *docs) {
      if (auto b = core_->StoredBytes(d.record); b.ok()) bytes += *b;
    }
    u->set_stored_bytes(bytes);
  }
  SetTimestamp(t.created_micros, out->mutable_create_time());
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateTenant(grpc::CallbackServerContext* context,
                                                         const v1::CreateTenantRequest* request,
                                                         v1::Tenant* response) {
  if (auto p = AuthenticateAdmin(*core_, *context); !p.ok()) return FinishUnary(context, p.status());
  auto t = core_->tenants().CreateTenant(request->name(), FromProto(request->quotas()));
  if (t.ok()) Fill(*t, response);
  return FinishUnary(context, t.status());
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetTenant(grpc::CallbackServerContext* context,
                                                      const v1::GetTenantRequest* request,
                                                      v1::Tenant* response) {
  if (auto p = AuthenticateAdmin(*core_, *context); !p.ok()) return FinishUnary(context, p.status());
  auto id = ParseTenantId(request->tenant_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  auto t = core_->tenants().GetTenant(*id);
  if (t.ok()) Fill(*t, response);
  return FinishUnary(context, t.status());
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListTenants(grpc::CallbackServerContext* context,
                                                        const v1::ListTenantsRequest* request,
                                                        v1::ListTenantsResponse* response) {
  if (auto p = AuthenticateAdmin(*core_, *context); !p.ok()) return FinishUnary(context, p.status());
  auto tenants = core_->tenants().ListTenants();
  if (tenants.ok()) {
    for (const TenantInfo& t : *tenants) Fill(t, response->add_tenants());
  }
  return FinishUnary(context, tenants.status());
}

grpc::ServerUnaryReactor* AdminServiceImpl::SetQuotas(grpc::CallbackServerContext* context,
                                                      const v1::SetQuotasRequest* request,
                                                      v1::Tenant* response) {
  if (auto p = AuthenticateAdmin(*core_, *context); !p.ok()) return FinishUnary(context, p.status());
  auto id = ParseTenantId(request->tenant_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  auto t = core_->tenants().SetQuotas(*id, FromProto(request->quotas()));
  if (t.ok()) Fill(*t, response);
  return FinishUnary(context, t.status());
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateApiKey(grpc::CallbackServerContext* context,
                                                         const v1::CreateApiKeyRequest* request,
                                                         v1::ApiKey* response) {
  if (auto p = AuthenticateAdmin(*core_, *context); !p.ok()) return FinishUnary(context, p.status());
  auto id = ParseTenantId(request->tenant_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  auto key = core_->tenants().CreateApiKey(*id, request->name());
  if (key.ok()) {
    ToProto(key->first, response);
    response->set_secret(key->second);
  }
  return FinishUnary(context, key.status());
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListApiKeys(grpc::CallbackServerContext* context,
                                                        const v1::ListApiKeysRequest* request,
                                                        v1::ListApiKeysResponse* response) {
  if (auto p = AuthenticateAdmin(*core_, *context); !p.ok()) return FinishUnary(context, p.status());
  auto id = ParseTenantId(request->tenant_id());
  if (!id.ok()) return FinishUnary(context, id.status());
  auto keys = core_->tenants().ListApiKeys(*id);
  if (keys.ok()) {
    for (const ApiKeyInfo& k : *keys) ToProto(k, response->add_keys());
  }
  return FinishUnary(context, keys.status());
}

grpc::ServerUnaryReactor* AdminServiceImpl::RevokeApiKey(grpc::CallbackServerContext* context,
                                                         const v1::RevokeApiKeyRequest* request,
                                                         v1::RevokeApiKeyResponse* response) {
  if (auto p = AuthenticateAdmin(*core_, *context); !p.ok()) return FinishUnary(context, p.status());
  return FinishUnary(context, core_->tenants().RevokeApiKey(request->key_id()));
}

}  // namespace tome::services
