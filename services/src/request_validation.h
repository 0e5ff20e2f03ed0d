// Checks of client-supplied request fields, as pure functions of their inputs (no RPC or
// store types), so that they are unit-tested and fuzzed on their own (tests/fuzz).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tome/storage/context_store.h"

namespace tome::services {

// Parses a document id as given to clients (decimal digits, nonzero). InvalidArgument
// otherwise; the message quotes at most 64 bytes of `text`.
absl::StatusOr<storage::DocumentId> ParseDocumentId(absl::string_view text);
// Parses a tenant id (decimal digits, nonzero). InvalidArgument otherwise.
absl::StatusOr<storage::TenantId> ParseTenantId(absl::string_view text);

// A section starting in the text of one AppendText call, at a byte offset of that text.
struct SectionStart {
  std::string name;
  int64_t byte_offset = 0;
};

struct AskParams {
  storage::DocumentId document = 0;  // or:
  std::string session_id;
  std::string question;
  int32_t max_tokens = 0;  // 0 = default
  float temperature = 0;
  float top_p = 0;  // 0 = 1
  uint64_t seed = 0;
  int64_t version = 0;  // 0 = latest
  int32_t max_citations = 3;
  absl::Time deadline = absl::InfiniteFuture();
};

// The server's request limits (CoreOptions holds the configured values).
struct RequestLimits {
  int64_t max_document_bytes = int64_t{1} << 30;  // per AppendText call
  int64_t max_question_bytes = 16 << 10;
  int32_t max_generated_tokens = 4096;
};

// InvalidArgument for an empty, over-long (> max_question_bytes) or non-UTF-8 question,
// max_tokens outside [0, max_generated_tokens], temperature outside [0, 10] or top_p
// outside [0, 1] (NaN included), or both a session and a document.
absl::Status ValidateAskParams(const AskParams& params, const RequestLimits& limits);

// InvalidArgument for empty or non-UTF-8 text, or sections that do not start at character
// boundaries in increasing order inside the text; ResourceExhausted for text over
// max_document_bytes.
absl::Status ValidateAppend(absl::string_view text, const std::vector<SectionStart>& sections,
                            const RequestLimits& limits);

}  // namespace tome::services
