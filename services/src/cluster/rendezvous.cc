#include "cluster/rendezvous.h"

#include <xxhash.h>

#include <algorithm>
#include <utility>

namespace tome::services::cluster {

uint64_t RendezvousScore(absl::string_view worker_id, uint64_t document) {
  // The document id seeds the hash of the worker id; a final mix spreads nearby ids.
  uint64_t h = XXH64(worker_id.data(), worker_id.size(), document);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

std::vector<std::string> RankWorkers(uint64_t document, std::vector<std::string> worker_ids) {
  std::sort(worker_ids.begin(), worker_ids.end());
  worker_ids.erase(std::unique(worker_ids.begin(), worker_ids.end()), worker_ids.end());
  std::vector<std::pair<uint64_t, std::string>> scored;
  scored.reserve(worker_ids.size());
  for (std::string& id : worker_ids) {
    const uint64_t score = RendezvousScore(id, document);
    scored.emplace_back(score, std::move(id));
  }
  std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::vector<std::string> out;
  out.reserve(scored.size());
  for (auto& [score, id] : scored) out.push_back(std::move(id));
  return out;
}

}  // namespace tome::services::cluster
