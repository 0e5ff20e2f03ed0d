// The stored forms of tenants and API keys (JSON service records), as pure functions.
#include <exception>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "auth/tenants.h"
#include "nlohmann/json.hpp"
#include "tome/base/json_int.h"
#include "session_record.h"

namespace tome::services {
namespace {

using base::JsonInt;
using base::JsonIntOr;
using json = nlohmann::json;

json QuotasToJson(const Quotas& q) {
  return {{"max_stored_bytes", q.max_stored_bytes},
          {"max_documents", q.max_documents},
          {"max_concurrent_requests", q.max_concurrent_requests},
          {"max_tokens_per_minute", q.max_tokens_per_minute},
          {"session_ttl_seconds", q.session_ttl_seconds}};
}

// Throws for a field of another type or out of range (the callers catch it).
Quotas QuotasFromJson(const json& j) {
  if (!j.is_object()) throw std::out_of_range("quotas are not an object");
  Quotas q;
  q.max_stored_bytes = JsonIntOr<int64_t>(j, "max_stored_bytes", 0);
  q.max_documents = JsonIntOr<int64_t>(j, "max_documents", 0);
  q.max_concurrent_requests = JsonIntOr<int32_t>(j, "max_concurrent_requests", 0);
  q.max_tokens_per_minute = JsonIntOr<int64_t>(j, "max_tokens_per_minute", 0);
  q.session_ttl_seconds = JsonIntOr<int64_t>(j, "session_ttl_seconds", 0);
  return q;
}

}  // namespace

absl::Status ValidateQuotas(const Quotas& quotas) {
  if (quotas.max_stored_bytes < 0 || quotas.max_documents < 0 ||
      quotas.max_concurrent_requests < 0 || quotas.max_tokens_per_minute < 0 ||
      quotas.session_ttl_seconds < 0) {
    return absl::InvalidArgumentError("quotas must not be negative (0 means no limit)");
  }
  if (quotas.session_ttl_seconds > kMaxSessionTtlSeconds) {
    return absl::InvalidArgumentError(
        absl::StrCat("session_ttl_seconds must be at most ", kMaxSessionTtlSeconds));
  }
  return absl::OkStatus();
}

std::string EncodeTenantRecord(const TenantInfo& t) {
  return json{{"format", 1},
              {"id", t.id},
              {"name", t.name},
              {"quotas", QuotasToJson(t.quotas)},
              {"created_micros", t.created_micros}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<TenantInfo> DecodeTenantRecord(absl::string_view value) {
  const json j = json::parse(value.begin(), value.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("id") || !j.contains("name")) {
    return absl::DataLossError("a stored tenant record is damaged");
  }
  TenantInfo t;
  try {
    t.id = JsonInt<storage::TenantId>(j.at("id"));
    t.name = j.at("name").get<std::string>();
    t.quotas = QuotasFromJson(j.value("quotas", json::object()));
    t.created_micros = JsonIntOr<int64_t>(j, "created_micros", 0);
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("a stored tenant record is damaged: ", e.what()));
  }
  return t;
}

std::string EncodeApiKeyRecord(const ApiKeyInfo& k) {
  return json{{"format", 1},
              {"key_id", k.key_id},
              {"tenant", k.tenant},
              {"name", k.name},
              {"created_micros", k.created_micros},
              {"revoked", k.revoked}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<ApiKeyInfo> DecodeApiKeyRecord(absl::string_view value) {
  const json j = json::parse(value.begin(), value.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("key_id") || !j.contains("tenant")) {
    return absl::DataLossError("a stored API key record is damaged");
  }
  ApiKeyInfo k;
  try {
    k.key_id = j.at("key_id").get<std::string>();
    k.tenant = JsonInt<storage::TenantId>(j.at("tenant"));
    k.name = j.value("name", "");
    k.created_micros = JsonIntOr<int64_t>(j, "created_micros", 0);
    k.revoked = j.value("revoked", false);
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("a stored API key record is damaged: ", e.what()));
  }
  return k;
}

}  // namespace tome::services
