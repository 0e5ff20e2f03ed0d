#pragma once

#include "tome/v1/admin.grpc.pb.h"
#include "tome_core.h"

namespace tome::services {

// Tenants, keys and quotas; every call needs the admin key.
class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  explicit AdminServiceImpl(TomeCore* core) : core_(core) {}

  grpc::ServerUnaryReactor* CreateTenant(grpc::CallbackServerContext* context,
                                         const v1::CreateTenantRequest* request,
                                         v1::Tenant* response) override;
  grpc::ServerUnaryReactor* GetTenant(grpc::CallbackServerContext* context,
                                      const v1::GetTenantRequest* request,
                                      v1::Tenant* response) override;
  grpc::ServerUnaryReactor* ListTenants(grpc::CallbackServerContext* context,
                                        const v1::ListTenantsRequest* request,
                                        v1::ListTenantsResponse* response) override;
  grpc::ServerUnaryReactor* SetQuotas(grpc::CallbackServerContext* context,
                                      const v1::SetQuotasRequest* request,
                                      v1::Tenant* response) override;
  grpc::ServerUnaryReactor* CreateApiKey(grpc::CallbackServerContext* context,
                                         const v1::CreateApiKeyRequest* request,
                                         v1::ApiKey* response) override;
  grpc::ServerUnaryReactor* ListApiKeys(grpc::CallbackServerContext* context,
                                        const v1::ListApiKeysRequest* request,
                                        v1::ListApiKeysResponse* response) override;
  grpc::ServerUnaryReactor* RevokeApiKey(grpc::CallbackServerContext* context,
                                         const v1::RevokeApiKeyRequest* request,
                                         v1::RevokeApiKeyResponse* response) override;

 private:
  void Fill(const TenantInfo& tenant, v1::Tenant* out);
  TomeCore* core_;
};

}  // namespace tome::services
