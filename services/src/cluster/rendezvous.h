// Rendezvous (highest-random-weight) placement of documents on workers: every worker gets a
// score per document, and the document's owner is the live worker with the highest score,
// its replica holder the next. Removing a worker moves only its own documents (to their
// second-ranked worker, which already holds the replica text); adding one takes over only
// the documents it now ranks first for. Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace tome::services::cluster {

// The score of worker `worker_id` for `document` (64-bit, from xxHash64).
uint64_t RendezvousScore(absl::string_view worker_id, uint64_t document);

// `worker_ids` ordered by descending score for `document` (ties by id): [0] is the owner,
// [1] the replica holder. Duplicates are kept once.
std::vector<std::string> RankWorkers(uint64_t document, std::vector<std::string> worker_ids);

}  // namespace tome::services::cluster
