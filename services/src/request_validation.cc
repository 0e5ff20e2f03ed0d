#include "request_validation.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tome/engine/tokenizer.h"

namespace tome::services {
namespace {

absl::StatusOr<uint64_t> ParseDecimalId(absl::string_view text, absl::string_view what,
                                        absl::string_view hint) {
  uint64_t id = 0;
  if (text.empty() || text.size() > 20 ||
      text.find_first_not_of("0123456789") != absl::string_view::npos ||
      !absl::SimpleAtoi(text, &id) || id == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", text.substr(0, 64), "' is not valid (", hint, ")"));
  }
  return id;
}

bool IsUtf8Boundary(absl::string_view text, int64_t offset) {
  return offset == static_cast<int64_t>(text.size()) ||
         (static_cast<unsigned char>(text[offset]) & 0xc0) != 0x80;
}

}  // namespace

absl::StatusOr<storage::DocumentId> ParseDocumentId(absl::string_view text) {
  return ParseDecimalId(text, "document_id", "the decimal id that CreateDocument returned");
}

absl::StatusOr<storage::TenantId> ParseTenantId(absl::string_view text) {
  return ParseDecimalId(text, "tenant_id", "the decimal id of a tenant");
}

absl::Status ValidateAskParams(const AskParams& params, const RequestLimits& limits) {
  if (params.question.empty()) return absl::InvalidArgumentError("the question is empty");
  if (static_cast<int64_t>(params.question.size()) > limits.max_question_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("the question is ", params.question.size(),
                                                   " bytes; the limit is ",
                                                   limits.max_question_bytes));
  }
  if (!engine::IsValidUtf8(params.question)) {
    return absl::InvalidArgumentError("the question is not valid UTF-8");
  }
  if (params.max_tokens < 0 || params.max_tokens > limits.max_generated_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be in [0, ", limits.max_generated_tokens, "]"));
  }
  // Written so that NaN fails both comparisons.
  if (!(params.temperature >= 0 && params.temperature <= 10) ||
      !(params.top_p >= 0 && params.top_p <= 1)) {
    return absl::InvalidArgumentError("temperature must be in [0, 10] and top_p in [0, 1]");
  }
  if (!params.session_id.empty() && (params.document != 0 || params.version != 0)) {
    return absl::InvalidArgumentError(
        "give either session_id or document_id (and version), not both");
  }
  return absl::OkStatus();
}

absl::Status ValidateAppend(absl::string_view text, const std::vector<SectionStart>& sections,
                            const RequestLimits& limits) {
  if (text.empty()) return absl::InvalidArgumentError("the text to append is empty");
  if (static_cast<int64_t>(text.size()) > limits.max_document_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the text is ", text.size(), " bytes; this server accepts at most ",
        limits.max_document_bytes, " bytes per AppendText call (split it into several calls)"));
  }
  if (!engine::IsValidUtf8(text)) {
    return absl::InvalidArgumentError("the text is not valid UTF-8");
  }
  for (size_t i = 0; i < sections.size(); ++i) {
    const int64_t at = sections[i].byte_offset;
    if (at < 0 || at > static_cast<int64_t>(text.size()) || !IsUtf8Boundary(text, at) ||
        (i > 0 && at <= sections[i - 1].byte_offset)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "section '", sections[i].name.substr(0, 256),
          "' must start at a character boundary after the previous section"));
    }
  }
  return absl::OkStatus();
}

}  // namespace tome::services
