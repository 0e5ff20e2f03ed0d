#include "cluster/session_ids.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tome::services::cluster {

std::string EncodeSessionId(absl::string_view worker_session_id, storage::DocumentId document) {
  return absl::StrCat(worker_session_id, ".", document);
}

absl::StatusOr<std::pair<std::string, storage::DocumentId>> DecodeSessionId(
    absl::string_view session_id) {
  const size_t dot = session_id.rfind('.');
  storage::DocumentId document = 0;
  if (session_id.size() > 128 || dot == absl::string_view::npos || dot == 0 ||
      dot + 1 == session_id.size() ||
      session_id.substr(dot + 1).find_first_not_of("0123456789") != absl::string_view::npos ||
      !absl::SimpleAtoi(session_id.substr(dot + 1), &document) || document == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("session_id '", session_id.substr(0, 64),
                     "' is not valid (use the id CreateSession or Ask returned through a router)"));
  }
  return std::make_pair(std::string(session_id.substr(0, dot)), document);
}

}  // namespace tome::services::cluster
