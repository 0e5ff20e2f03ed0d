// Session ids as a router hands them out: "<worker session id>.<document id>". The document
// part lets any router, including one restarted a moment ago, route every later call of the
// session to the document's owner without shared state.
#pragma once

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tome/storage/context_store.h"

namespace tome::services::cluster {

std::string EncodeSessionId(absl::string_view worker_session_id, storage::DocumentId document);

// (worker session id, document id). InvalidArgument for anything a router did not hand out.
absl::StatusOr<std::pair<std::string, storage::DocumentId>> DecodeSessionId(
    absl::string_view session_id);

}  // namespace tome::services::cluster
