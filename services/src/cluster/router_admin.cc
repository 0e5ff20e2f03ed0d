#include <glog/logging.h>

#include "absl/strings/str_cat.h"
#include "cluster/router_services.h"
#include "document_service.h"
#include "request_validation.h"
#include "status_util.h"

namespace tome::services::cluster {
namespace {

Quotas FromProto(const v1::Quotas& q) {
  return Quotas{q.max_stored_bytes(), q.max_documents(), q.max_concurrent_requests(),
                q.max_tokens_per_minute(), q.session_ttl_seconds()};
}

void Fill(const TenantInfo& t, const std::map<std::string, v1::Usage>& usage, v1::Tenant* out) {
  out->set_id(absl::StrCat(t.id));
  out->set_name(t.name);
  v1::Quotas* q = out->mutable_quotas();
  q->set_max_stored_bytes(t.quotas.max_stored_bytes);
  q->set_max_documents(t.quotas.max_documents);
  q->set_max_concurrent_requests(t.quotas.max_concurrent_requests);
  q->set_max_tokens_per_minute(t.quotas.max_tokens_per_minute);
  q->set_session_ttl_seconds(t.quotas.session_ttl_seconds);
  if (auto it = usage.find(out->id()); it != usage.end()) *out->mutable_usage() = it->second;
  SetTimestamp(t.created_micros, out->mutable_create_time());
}

void ToProto(const ApiKeyInfo& k, v1::ApiKey* out) {
  out->set_key_id(k.key_id);
  out->set_tenant_id(absl::StrCat(k.tenant));
  out->set_name(k.name);
  SetTimestamp(k.created_micros, out->mutable_create_time());
  out->set_revoked(k.revoked);
}

}  // namespace

std::map<std::string, v1::Usage> RouterAdminService::UsageByTenant(grpc::ServerContext* context,
                                                                   const Caller& caller) {
  // Each worker reports the tenants it has served; their usage adds up.
  std::map<std::string, v1::Usage> out;
  for (const Target& t : router_->LiveWorkers()) {
    v1::ListTenantsResponse part;
    grpc::Status s = v1::AdminService::NewStub(t.channel)->ListTenants(
        router_->Forward(*context, caller).get(), v1::ListTenantsRequest(), &part);
    if (!s.ok()) {
      LOG(WARNING) << "usage from worker " << t.worker_id << ": " << s.error_message();
      continue;
    }
    for (const v1::Tenant& tenant : part.tenants()) {
      v1::Usage& u = out[tenant.id()];
      u.set_stored_bytes(u.stored_bytes() + tenant.usage().stored_bytes());
      u.set_documents(u.documents() + tenant.usage().documents());
      u.set_concurrent_requests(u.concurrent_requests() + tenant.usage().concurrent_requests());
      u.set_tokens_last_minute(u.tokens_last_minute() + tenant.usage().tokens_last_minute());
    }
  }
  return out;
}

grpc::Status RouterAdminService::CreateTenant(grpc::ServerContext* context,
                                              const v1::CreateTenantRequest* request,
                                              v1::Tenant* response) {
  auto caller = router_->Authenticate(*context, /*admin=*/true);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto t = router_->tenants().CreateTenant(request->name(), FromProto(request->quotas()));
  if (t.ok()) Fill(*t, {}, response);
  return ToGrpcStatus(t.status());
}

grpc::Status RouterAdminService::GetTenant(grpc::ServerContext* context,
                                           const v1::GetTenantRequest* request,
                                           v1::Tenant* response) {
  auto caller = router_->Authenticate(*context, true);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto id = ParseTenantId(request->tenant_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  auto t = router_->tenants().GetTenant(*id);
  if (t.ok()) Fill(*t, UsageByTenant(context, *caller), response);
  return ToGrpcStatus(t.status());
}

grpc::Status RouterAdminService::ListTenants(grpc::ServerContext* context,
                                             const v1::ListTenantsRequest* request,
                                             v1::ListTenantsResponse* response) {
  auto caller = router_->Authenticate(*context, true);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto tenants = router_->tenants().ListTenants();
  if (!tenants.ok()) return ToGrpcStatus(tenants.status());
  const auto usage = UsageByTenant(context, *caller);
  for (const TenantInfo& t : *tenants) Fill(t, usage, response->add_tenants());
  return grpc::Status::OK;
}

grpc::Status RouterAdminService::SetQuotas(grpc::ServerContext* context,
                                           const v1::SetQuotasRequest* request,
                                           v1::Tenant* response) {
  auto caller = router_->Authenticate(*context, true);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto id = ParseTenantId(request->tenant_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  // Workers pick the new quotas up with the tenant's next forwarded call.
  auto t = router_->tenants().SetQuotas(*id, FromProto(request->quotas()));
  if (t.ok()) Fill(*t, {}, response);
  return ToGrpcStatus(t.status());
}

grpc::Status RouterAdminService::CreateApiKey(grpc::ServerContext* context,
                                              const v1::CreateApiKeyRequest* request,
                                              v1::ApiKey* response) {
  auto caller = router_->Authenticate(*context, true);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto tenant = ParseTenantId(request->tenant_id());
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  auto key = router_->tenants().CreateApiKey(*tenant, request->name());
  if (key.ok()) {
    ToProto(key->first, response);
    response->set_secret(key->second);
  }
  return ToGrpcStatus(key.status());
}

grpc::Status RouterAdminService::ListApiKeys(grpc::ServerContext* context,
                                             const v1::ListApiKeysRequest* request,
                                             v1::ListApiKeysResponse* response) {
  auto caller = router_->Authenticate(*context, true);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto tenant = ParseTenantId(request->tenant_id());
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  auto keys = router_->tenants().ListApiKeys(*tenant);
  if (keys.ok()) {
    for (const ApiKeyInfo& k : *keys) ToProto(k, response->add_keys());
  }
  return ToGrpcStatus(keys.status());
}

grpc::Status RouterAdminService::RevokeApiKey(grpc::ServerContext* context,
                                              const v1::RevokeApiKeyRequest* request,
                                              v1::RevokeApiKeyResponse* response) {
  auto caller = router_->Authenticate(*context, true);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  return ToGrpcStatus(router_->tenants().RevokeApiKey(request->key_id()));
}

}  // namespace tome::services::cluster
