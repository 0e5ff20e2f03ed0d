// `admin ...`: tenants, quotas and API keys (AdminService; needs the admin key).
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/output.h"

namespace tome::cli {
namespace {

// Quotas from the flags given on the command line, over `base`.
v1::Quotas QuotasFromFlags(v1::Quotas base) {
  if (FlagGiven("max_stored_bytes"))
    base.set_max_stored_bytes(absl::GetFlag(FLAGS_max_stored_bytes));
  if (FlagGiven("max_documents")) base.set_max_documents(absl::GetFlag(FLAGS_max_documents));
  if (FlagGiven("max_concurrent_requests")) {
    base.set_max_concurrent_requests(absl::GetFlag(FLAGS_max_concurrent_requests));
  }
  if (FlagGiven("max_tokens_per_minute")) {
    base.set_max_tokens_per_minute(absl::GetFlag(FLAGS_max_tokens_per_minute));
  }
  if (FlagGiven("session_ttl_seconds")) {
    base.set_session_ttl_seconds(absl::GetFlag(FLAGS_session_ttl_seconds));
  }
  return base;
}

bool AnyQuotaFlag() {
  for (const char* name : {"max_stored_bytes", "max_documents", "max_concurrent_requests",
                           "max_tokens_per_minute", "session_ttl_seconds"}) {
    if (FlagGiven(name)) return true;
  }
  return false;
}

int CreateTenant(Client& client, const Args& args) {
  v1::CreateTenantRequest request;
  request.set_name(args[0]);
  *request.mutable_quotas() = QuotasFromFlags({});
  v1::Tenant tenant;
  grpc::Status status = client.admin().CreateTenant(client.Context(true).get(), request, &tenant);
  if (!status.ok()) return Fail(status);
  PrintTenant(tenant);
  return 0;
}

int GetTenant(Client& client, const Args& args) {
  v1::GetTenantRequest request;
  request.set_tenant_id(args[0]);
  v1::Tenant tenant;
  grpc::Status status = client.admin().GetTenant(client.Context(true).get(), request, &tenant);
  if (!status.ok()) return Fail(status);
  PrintTenant(tenant);
  return 0;
}

int ListTenants(Client& client, const Args&) {
  v1::ListTenantsResponse response;
  grpc::Status status =
      client.admin().ListTenants(client.Context(true).get(), v1::ListTenantsRequest(), &response);
  if (!status.ok()) return Fail(status);
  bool header = true;
  for (const v1::Tenant& t : response.tenants()) {
    PrintTenantRow(t, header);
    header = false;
  }
  if (header && !absl::GetFlag(FLAGS_json)) std::printf("no tenants\n");
  return 0;
}

// SetQuotas replaces all quotas; the CLI changes only those named on the command line.
int SetQuotas(Client& client, const Args& args) {
  if (!AnyQuotaFlag()) {
    return Usage("name the quotas to set: --max_stored_bytes, --max_documents, "
                 "--max_concurrent_requests, --max_tokens_per_minute, --session_ttl_seconds");
  }
  v1::GetTenantRequest get;
  get.set_tenant_id(args[0]);
  v1::Tenant tenant;
  grpc::Status status = client.admin().GetTenant(client.Context(true).get(), get, &tenant);
  if (!status.ok()) return Fail(status);
  v1::SetQuotasRequest request;
  request.set_tenant_id(args[0]);
  *request.mutable_quotas() = QuotasFromFlags(tenant.quotas());
  status = client.admin().SetQuotas(client.Context(true).get(), request, &tenant);
  if (!status.ok()) return Fail(status);
  PrintTenant(tenant);
  return 0;
}

int CreateKey(Client& client, const Args& args) {
  v1::CreateApiKeyRequest request;
  request.set_tenant_id(args[0]);
  request.set_name(args.size() > 1 ? args[1] : absl::GetFlag(FLAGS_name));
  v1::ApiKey key;
  grpc::Status status = client.admin().CreateApiKey(client.Context(true).get(), request, &key);
  if (!status.ok()) return Fail(status);
  PrintNewApiKey(key);
  return 0;
}

int ListKeys(Client& client, const Args& args) {
  v1::ListApiKeysRequest request;
  request.set_tenant_id(args[0]);
  v1::ListApiKeysResponse response;
  grpc::Status status = client.admin().ListApiKeys(client.Context(true).get(), request, &response);
  if (!status.ok()) return Fail(status);
  bool header = true;
  for (const v1::ApiKey& k : response.keys()) {
    PrintApiKeyRow(k, header);
    header = false;
  }
  if (header && !absl::GetFlag(FLAGS_json)) std::printf("no keys\n");
  return 0;
}

int RevokeKey(Client& client, const Args& args) {
  v1::RevokeApiKeyRequest request;
  request.set_key_id(args[0]);
  v1::RevokeApiKeyResponse response;
  grpc::Status status = client.admin().RevokeApiKey(client.Context(true).get(), request, &response);
  if (!status.ok()) return Fail(status);
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(response);
  } else {
    std::printf("revoked key %s\n", args[0].c_str());
  }
  return 0;
}

}  // namespace

std::vector<Command> AdminCommands() {
  return {
      {"admin", "create-tenant", "NAME", "create a tenant (quota flags optional)", 1, 1,
       CreateTenant},
      {"admin", "get-tenant", "TENANT_ID", "show a tenant's quotas and usage", 1, 1, GetTenant},
      {"admin", "list-tenants", "", "list tenants", 0, 0, ListTenants},
      {"admin", "set-quotas", "TENANT_ID",
       "change the quotas named by flags (0 = no limit); others keep their value", 1, 1,
       SetQuotas},
      {"admin", "create-key", "TENANT_ID [LABEL]", "issue an API key; prints its secret once", 1,
       2, CreateKey},
      {"admin", "list-keys", "TENANT_ID", "list a tenant's keys (no secrets)", 1, 1, ListKeys},
      {"admin", "revoke-key", "KEY_ID", "revoke a key at once", 1, 1, RevokeKey},
  };
}

}  // namespace tome::cli
