// The stored form of a conversation session (sessions.h): a JSON record and the turns'
// token ids, as pure encode/decode functions (tests/fuzz feeds the decoders arbitrary bytes).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tome/storage/context_store.h"

namespace tome::services {

// At most this many tail tokens per session (a stored count above it is damage).
inline constexpr int64_t kMaxSessionTailTokens = int64_t{1} << 28;
// Session TTLs are capped (100 years) so that expiry times cannot overflow.
inline constexpr int64_t kMaxSessionTtlSeconds = int64_t{100} * 365 * 24 * 3600;

struct SessionInfo {
  std::string id;
  storage::TenantId tenant = 0;     // the session's owner (the caller who created it)
  storage::TenantId doc_owner = 0;  // the document's owner
  storage::DocumentId document = 0;
  int64_t version = 0;
  int64_t doc_tokens = 0;  // tokens of that document version
  int64_t turns = 0;
  std::vector<int32_t> tail;  // the turns' tokens
  int64_t created_micros = 0;
  int64_t last_used_micros = 0;
  int64_t ttl_seconds = 0;
  std::string parent;

  // last use + TTL, saturating (never overflows, whatever a record holds).
  int64_t expire_micros() const;
};

// {"format":1,"tenant":..,"doc_owner":..,"document":..,"version":..,"doc_tokens":..,
//  "turns":..,"tail_tokens":..,"created_micros":..,"last_used_micros":..,"ttl_seconds":..,
//  "parent":".."}
std::string EncodeSessionRecord(const SessionInfo& session);
// The session under `id` (tail left empty) and, in `tail_tokens`, the stored tail length.
// DataLoss for anything that is not such a record: not JSON, a field of the wrong type, a
// negative or impossible count.
absl::StatusOr<SessionInfo> DecodeSessionRecord(absl::string_view id, absl::string_view value,
                                                int64_t* tail_tokens);

// int32 little-endian token ids.
std::string EncodeSessionTail(const std::vector<int32_t>& tail);
// The first `tokens` ids of `value`; DataLoss if it holds fewer.
absl::StatusOr<std::vector<int32_t>> DecodeSessionTail(absl::string_view value, int64_t tokens);

}  // namespace tome::services
