// How a router vouches for its caller to a worker. The router authenticates the API key
// (against the tenants in etcd) and forwards the principal in call metadata, with the
// cluster's shared peer token; a worker trusts the principal only when the token matches
// (and, where configured, only over mutual TLS). The tenant's record travels along so that
// the worker applies its quotas without a tenant store of its own.
#pragma once

#include <grpcpp/client_context.h>

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "auth/tenants.h"

namespace tome::services::cluster {

inline constexpr char kPeerTokenHeader[] = "x-tome-peer-token";
inline constexpr char kPrincipalHeader[] = "x-tome-principal";  // "admin" or a tenant id
inline constexpr char kTenantHeader[] = "x-tome-tenant-bin";    // EncodeTenantRecord

// Router side: adds the token, `principal` and (when not null) `tenant` to `context`.
void AddPeerMetadata(grpc::ClientContext* context, const std::string& peer_token,
                     const Principal& principal, const TenantInfo* tenant);

// Worker side: the principal forwarded in `metadata`. Unauthenticated unless the peer token
// matches `peer_token` (which must not be empty). Mirrors a forwarded tenant record into
// `tenants`.
absl::StatusOr<Principal> AuthenticatePeer(
    TenantRegistry& tenants, const std::string& peer_token,
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata);

// Reads a peer token file: its first line, whitespace trimmed. InvalidArgument when the file
// is unreadable or the token shorter than 16 bytes.
absl::StatusOr<std::string> ReadPeerToken(const std::string& path);

}  // namespace tome::services::cluster
