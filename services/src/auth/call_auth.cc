#include "auth/call_auth.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "cluster/peer_auth.h"
#include "tome/base/status_macros.h"
#include "tome_core.h"

namespace tome::services {

absl::StatusOr<Principal> AuthenticateCall(TomeCore& core,
                                           const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  if (!core.peer_token().empty()) {  // a cluster worker: the router authenticated the caller
    return cluster::AuthenticatePeer(core.tenants(), core.peer_token(), metadata);
  }
  auto it = metadata.find("authorization");
  absl::string_view secret;
  if (it != metadata.end()) {
    absl::string_view value(it->second.data(), it->second.size());
    if (absl::StartsWithIgnoreCase(value, "bearer ")) {
      secret = absl::StripAsciiWhitespace(value.substr(7));
    }
  }
  return core.Authenticate(secret);
}

absl::StatusOr<Principal> AuthenticateAdmin(TomeCore& core,
                                            const grpc::CallbackServerContext& context) {
  TOME_ASSIGN_OR_RETURN(Principal p, AuthenticateCall(core, context));
  if (!p.admin) {
    return absl::PermissionDeniedError("this call needs the admin key (TOME_ADMIN_KEY)");
  }
  return p;
}

absl::StatusOr<Principal> AuthenticateTenant(TomeCore& core,
                                             const grpc::CallbackServerContext& context) {
  TOME_ASSIGN_OR_RETURN(Principal p, AuthenticateCall(core, context));
  if (p.admin) {
    return absl::PermissionDeniedError(
        "the admin key manages tenants; use a tenant's API key for documents and questions");
  }
  return p;
}

}  // namespace tome::services
