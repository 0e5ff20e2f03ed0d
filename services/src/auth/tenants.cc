#include "auth/tenants.h"

#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tome/base/status_macros.h"

namespace tome::services {
namespace {

using storage::RecordKind;

constexpr size_t kMaxTenantName = 128;
constexpr absl::string_view kNextTenantId = "next_tenant_id";
constexpr absl::string_view kAdminKeyHash = "admin_key_hash";

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

}  // namespace

std::string HashSecret(absl::string_view secret) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

absl::StatusOr<std::string> TenantRegistry::NewSecret() {
  unsigned char bytes[24];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::InternalError("the system random generator failed");
  }
  return absl::StrCat("tome_", absl::BytesToHexString(absl::string_view(
                                   reinterpret_cast<const char*>(bytes), sizeof(bytes))));
}

absl::Status TenantRegistry::PutTenant(const TenantInfo& t) {
  return store_->Put(RecordKind::kTenant, absl::StrCat(t.id), EncodeTenantRecord(t));
}

absl::Status TenantRegistry::Bootstrap(const std::string& credentials_path) {
  {
    TOME_ASSIGN_OR_RETURN(auto tenants, store_->List(RecordKind::kTenant));
    if (!tenants.empty()) return absl::OkStatus();
  }
  TOME_ASSIGN_OR_RETURN(TenantInfo tenant, CreateTenant("default", Quotas{}));
  if (tenant.id != storage::kDefaultTenant) {
    return absl::InternalError("the first tenant did not get id 1");
  }
  TOME_ASSIGN_OR_RETURN(std::string admin_secret, NewSecret());
  TOME_ASSIGN_OR_RETURN(auto key, CreateApiKey(tenant.id, "bootstrap"));
  TOME_RETURN_IF_ERROR(
      store_->Put(RecordKind::kServer, kAdminKeyHash, HashSecret(admin_secret)));
  const std::string tmp = credentials_path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "# Written by tomed on its first start. Keep it secret.\n"
        << "TOME_ADMIN_KEY=" << admin_secret << "\n"
        << "TOME_API_KEY=" << key.second << "\n";
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", tmp));
  }
  chmod(tmp.c_str(), 0600);
  if (std::rename(tmp.c_str(), credentials_path.c_str()) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("cannot write ", credentials_path));
  }
  return absl::OkStatus();
}

absl::StatusOr<TenantInfo> TenantRegistry::CreateTenant(absl::string_view name,
                                                        const Quotas& quotas) {
  if (name.empty() || name.size() > kMaxTenantName) {
    return absl::InvalidArgumentError(
        absl::StrCat("tenant names are 1 to ", kMaxTenantName, " bytes"));
  }
  TOME_RETURN_IF_ERROR(ValidateQuotas(quotas));
  std::lock_guard<std::mutex> lock(mu_);
  if (store_->Get(RecordKind::kTenantName, name).ok()) {
    return absl::AlreadyExistsError(absl::StrCat("a tenant named '", name, "' exists"));
  }
  TOME_ASSIGN_OR_RETURN(int64_t next, store_->NextId(kNextTenantId, 1));
  const storage::TenantId id = static_cast<storage::TenantId>(next);
  TenantInfo t{id, std::string(name), quotas, NowMicros()};
  TOME_RETURN_IF_ERROR(PutTenant(t));
  TOME_RETURN_IF_ERROR(store_->Put(RecordKind::kTenantName, name, absl::StrCat(id)));
  return t;
}

absl::Status TenantRegistry::UpsertTenant(const TenantInfo& tenant) {
  const std::string value = EncodeTenantRecord(tenant);
  if (auto stored = store_->Get(RecordKind::kTenant, absl::StrCat(tenant.id));
      stored.ok() && *stored == value) {
    return absl::OkStatus();
  }
  std::lock_guard<std::mutex> lock(mu_);
  TOME_RETURN_IF_ERROR(store_->Put(RecordKind::kTenant, absl::StrCat(tenant.id), value));
  return store_->Put(RecordKind::kTenantName, tenant.name, absl::StrCat(tenant.id));
}

absl::StatusOr<TenantInfo> TenantRegistry::GetTenant(storage::TenantId id) {
  auto value = store_->Get(RecordKind::kTenant, absl::StrCat(id));
  if (absl::IsNotFound(value.status())) {
    return absl::NotFoundError(absl::StrCat("tenant ", id, " not found"));
  }
  TOME_RETURN_IF_ERROR(value.status());
  return DecodeTenantRecord(*value);
}

absl::StatusOr<std::vector<TenantInfo>> TenantRegistry::ListTenants() {
  TOME_ASSIGN_OR_RETURN(auto records, store_->List(RecordKind::kTenant));
  std::vector<TenantInfo> out;
  for (const auto& [id, value] : records) {
    TOME_ASSIGN_OR_RETURN(TenantInfo t, DecodeTenantRecord(value));
    out.push_back(std::move(t));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

absl::StatusOr<TenantInfo> TenantRegistry::SetQuotas(storage::TenantId id, const Quotas& quotas) {
  TOME_RETURN_IF_ERROR(ValidateQuotas(quotas));
  std::lock_guard<std::mutex> lock(mu_);
  TOME_ASSIGN_OR_RETURN(TenantInfo t, GetTenant(id));
  t.quotas = quotas;
  TOME_RETURN_IF_ERROR(PutTenant(t));
  return t;
}

absl::StatusOr<std::pair<ApiKeyInfo, std::string>> TenantRegistry::CreateApiKey(
    storage::TenantId tenant, absl::string_view name) {
  TOME_RETURN_IF_ERROR(GetTenant(tenant).status());
  if (name.size() > 256) return absl::InvalidArgumentError("key names are at most 256 bytes");
  TOME_ASSIGN_OR_RETURN(std::string secret, NewSecret());
  const std::string hash = HashSecret(secret);
  ApiKeyInfo info{hash.substr(0, 16), tenant, std::string(name), NowMicros(), false};
  std::lock_guard<std::mutex> lock(mu_);
  TOME_RETURN_IF_ERROR(
      store_->Put(storage::RecordKind::kApiKey, hash, EncodeApiKeyRecord(info)));
  TOME_RETURN_IF_ERROR(store_->Put(storage::RecordKind::kApiKeyId, info.key_id, hash));
  return std::make_pair(info, secret);
}

absl::StatusOr<std::vector<ApiKeyInfo>> TenantRegistry::ListApiKeys(storage::TenantId tenant) {
  TOME_ASSIGN_OR_RETURN(auto records, store_->List(RecordKind::kApiKey));
  std::vector<ApiKeyInfo> out;
  for (const auto& [hash, value] : records) {
    TOME_ASSIGN_OR_RETURN(ApiKeyInfo k, DecodeApiKeyRecord(value));
    if (k.tenant == tenant) out.push_back(std::move(k));
  }
  return out;
}

absl::Status TenantRegistry::RevokeApiKey(absl::string_view key_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto hash = store_->Get(RecordKind::kApiKeyId, key_id);
  if (absl::IsNotFound(hash.status())) {
    return absl::NotFoundError(absl::StrCat("API key ", key_id, " not found"));
  }
  TOME_RETURN_IF_ERROR(hash.status());
  TOME_ASSIGN_OR_RETURN(std::string value, store_->Get(RecordKind::kApiKey, *hash));
  TOME_ASSIGN_OR_RETURN(ApiKeyInfo k, DecodeApiKeyRecord(value));
  k.revoked = true;
  return store_->Put(RecordKind::kApiKey, *hash, EncodeApiKeyRecord(k));
}

absl::StatusOr<Principal> TenantRegistry::Authenticate(absl::string_view secret) {
  const auto unauthenticated = absl::UnauthenticatedError(
      "missing or invalid API key: send `authorization: Bearer <key>` with a key from "
      "AdminService.CreateApiKey (or <data_dir>/bootstrap-credentials)");
  if (secret.empty() || secret.size() > 256) return unauthenticated;
  const std::string hash = HashSecret(secret);
  if (auto admin = store_->Get(RecordKind::kServer, kAdminKeyHash); admin.ok()) {
    if (*admin == hash) return Principal{0, true};
  }
  auto value = store_->Get(RecordKind::kApiKey, hash);
  if (!value.ok()) return unauthenticated;
  TOME_ASSIGN_OR_RETURN(ApiKeyInfo k, DecodeApiKeyRecord(*value));
  if (k.revoked) return unauthenticated;
  return Principal{k.tenant, false};
}

}  // namespace tome::services
