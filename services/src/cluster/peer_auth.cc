#include "cluster/peer_auth.h"

#include <openssl/crypto.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tome/base/status_macros.h"

namespace tome::services::cluster {
namespace {

absl::string_view Find(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
                       absl::string_view key) {
  auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  if (it == metadata.end()) return {};
  return absl::string_view(it->second.data(), it->second.size());
}

}  // namespace

void AddPeerMetadata(grpc::ClientContext* context, const std::string& peer_token,
                     const Principal& principal, const TenantInfo* tenant) {
  context->AddMetadata(kPeerTokenHeader, peer_token);
  context->AddMetadata(kPrincipalHeader,
                       principal.admin ? std::string("admin") : absl::StrCat(principal.tenant));
  if (tenant != nullptr) context->AddMetadata(kTenantHeader, EncodeTenantRecord(*tenant));
}

absl::StatusOr<Principal> AuthenticatePeer(
    TenantRegistry& tenants, const std::string& peer_token,
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
  const auto refused = absl::UnauthenticatedError(
      "this tomed is a cluster worker: call a router (tomed --role=router), which "
      "authenticates API keys; workers accept only calls forwarded by routers");
  if (peer_token.empty()) return refused;
  // Compare hashes so that the comparison time says nothing about the token.
  const std::string want = HashSecret(peer_token);
  const std::string got = HashSecret(Find(metadata, kPeerTokenHeader));
  if (CRYPTO_memcmp(want.data(), got.data(), want.size()) != 0) return refused;
  const absl::string_view who = Find(metadata, kPrincipalHeader);
  if (who == "admin") {
    if (absl::string_view record = Find(metadata, kTenantHeader); !record.empty()) {
      TOME_ASSIGN_OR_RETURN(TenantInfo t, DecodeTenantRecord(record));
      TOME_RETURN_IF_ERROR(tenants.UpsertTenant(t));
    }
    return Principal{0, true};
  }
  storage::TenantId tenant = 0;
  if (!absl::SimpleAtoi(who, &tenant) || tenant == 0) {
    return absl::InvalidArgumentError("the router forwarded no principal");
  }
  if (absl::string_view record = Find(metadata, kTenantHeader); !record.empty()) {
    TOME_ASSIGN_OR_RETURN(TenantInfo t, DecodeTenantRecord(record));
    if (t.id != tenant) return absl::InvalidArgumentError("the forwarded tenant does not match");
    TOME_RETURN_IF_ERROR(tenants.UpsertTenant(t));
  }
  return Principal{tenant, false};
}

absl::StatusOr<std::string> ReadPeerToken(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read the peer token file ", path));
  }
  std::string token(absl::StripAsciiWhitespace(line));
  if (token.size() < 16) {
    return absl::InvalidArgumentError(absl::StrCat("the peer token in ", path,
                                                   " is shorter than 16 bytes; use e.g. "
                                                   "`openssl rand -hex 32`"));
  }
  return token;
}

}  // namespace tome::services::cluster
