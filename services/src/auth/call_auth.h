// Authentication of one gRPC call from its `authorization: Bearer <key>` metadata.
#pragma once

#include <grpcpp/server_context.h>

#include "absl/status/statusor.h"
#include "auth/tenants.h"

namespace tome::services {

class TomeCore;

// The caller of `context`; Unauthenticated when the key is missing or unknown.
absl::StatusOr<Principal> AuthenticateCall(TomeCore& core,
                                           const grpc::CallbackServerContext& context);
// As above, and PermissionDenied unless the caller is the admin.
absl::StatusOr<Principal> AuthenticateAdmin(TomeCore& core,
                                            const grpc::CallbackServerContext& context);
// As above, and PermissionDenied for the admin (who owns no documents or sessions).
absl::StatusOr<Principal> AuthenticateTenant(TomeCore& core,
                                             const grpc::CallbackServerContext& context);

}  // namespace tome::services
