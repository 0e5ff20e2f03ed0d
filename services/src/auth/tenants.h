// Tenants, their quotas, and API keys, kept as service records in the context store.
//
// API keys are stored only as SHA-256 hashes (OpenSSL): a stolen store reveals no key. The
// admin key (for AdminService) is stored the same way. Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "auth/record_store.h"
#include "tome/storage/context_store.h"

namespace tome::services {

struct Quotas {
  int64_t max_stored_bytes = 0;  // 0: no limit, for every field
  int64_t max_documents = 0;
  int32_t max_concurrent_requests = 0;
  int64_t max_tokens_per_minute = 0;
  int64_t session_ttl_seconds = 0;  // 0: the server default
};

struct TenantInfo {
  storage::TenantId id = 0;
  std::string name;
  Quotas quotas;
  int64_t created_micros = 0;
};

struct ApiKeyInfo {
  std::string key_id;
  storage::TenantId tenant = 0;
  std::string name;
  int64_t created_micros = 0;
  bool revoked = false;
};

// Who a call comes from.
struct Principal {
  storage::TenantId tenant = 0;
  bool admin = false;
};

// The SHA-256 of `secret`, hex.
std::string HashSecret(absl::string_view secret);

// InvalidArgument for a negative quota or a session TTL above kMaxSessionTtlSeconds.
absl::Status ValidateQuotas(const Quotas& quotas);

// Stored records (auth/tenant_records.cc): JSON objects with a "format" field. The decoders
// return DataLoss for anything else, whatever the bytes (tests/fuzz feeds them garbage).
std::string EncodeTenantRecord(const TenantInfo& tenant);
absl::StatusOr<TenantInfo> DecodeTenantRecord(absl::string_view value);
std::string EncodeApiKeyRecord(const ApiKeyInfo& key);
absl::StatusOr<ApiKeyInfo> DecodeApiKeyRecord(absl::string_view value);

class TenantRegistry {
 public:
  // Records in `store` (not owned).
  explicit TenantRegistry(storage::ContextStore* store)
      : owned_records_(ContextStoreRecords(store)), store_(owned_records_.get()) {}
  // Records in `records` (not owned): etcd for the routers of a cluster.
  explicit TenantRegistry(RecordStore* records) : store_(records) {}

  // On a store without tenants: creates tenant "default" (id 1, the owner of documents
  // written before tenancy existed), an admin key and a key of that tenant, and writes
  // them to `credentials_path` (mode 0600) as shell assignments TOME_ADMIN_KEY=... and
  // TOME_API_KEY=.... Does nothing otherwise.
  absl::Status Bootstrap(const std::string& credentials_path);

  absl::StatusOr<TenantInfo> CreateTenant(absl::string_view name, const Quotas& quotas);
  absl::StatusOr<TenantInfo> GetTenant(storage::TenantId id);
  absl::StatusOr<std::vector<TenantInfo>> ListTenants();
  absl::StatusOr<TenantInfo> SetQuotas(storage::TenantId id, const Quotas& quotas);
  // Writes `tenant` as given (id included): a cluster worker mirrors the tenants of the
  // calls the router forwards, so that quotas apply. Does nothing when already identical.
  absl::Status UpsertTenant(const TenantInfo& tenant);

  // Returns the new key and its secret (shown once).
  absl::StatusOr<std::pair<ApiKeyInfo, std::string>> CreateApiKey(storage::TenantId tenant,
                                                                  absl::string_view name);
  absl::StatusOr<std::vector<ApiKeyInfo>> ListApiKeys(storage::TenantId tenant);
  absl::Status RevokeApiKey(absl::string_view key_id);

  // The principal a secret stands for: the admin, or a tenant's unrevoked key.
  // Unauthenticated otherwise (the message never says which part was wrong).
  absl::StatusOr<Principal> Authenticate(absl::string_view secret);

 private:
  absl::Status PutTenant(const TenantInfo& tenant);
  absl::StatusOr<std::string> NewSecret();

  std::unique_ptr<RecordStore> owned_records_;
  RecordStore* store_;
  std::mutex mu_;  // serialises read-modify-write of tenants and keys
};

}  // namespace tome::services
