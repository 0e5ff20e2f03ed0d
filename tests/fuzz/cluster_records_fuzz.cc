// Cluster-mode decoders on arbitrary bytes (the first byte picks one): a worker's
// registration value as read from etcd, a session id as a client sends it to a router, and
// rendezvous placement over arbitrary worker ids. Errors or values that survive a round
// trip; placement is a permutation that does not depend on the order workers are listed in,
// and losing the first-ranked worker leaves the others' order unchanged.
#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "cluster/rendezvous.h"
#include "cluster/session_ids.h"
#include "cluster/worker_records.h"
#include "tests/fuzz/fuzz_util.h"

namespace cluster = tome::services::cluster;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string value(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto worker = cluster::DecodeWorkerValue("w", value);
      if (!worker.ok()) {
        FUZZ_CHECK(worker.status().code() == absl::StatusCode::kInvalidArgument);
        break;
      }
      FUZZ_CHECK(!worker->address.empty());
      auto again = cluster::DecodeWorkerValue("w", cluster::EncodeWorkerValue(*worker));
      FUZZ_CHECK(again.ok() && again->address == worker->address);
      break;
    }
    case 1: {
      auto session = cluster::DecodeSessionId(value);
      if (!session.ok()) {
        FUZZ_CHECK(session.status().code() == absl::StatusCode::kInvalidArgument);
        break;
      }
      FUZZ_CHECK(session->second != 0 && !session->first.empty());
      auto again = cluster::DecodeSessionId(
          cluster::EncodeSessionId(session->first, session->second));
      FUZZ_CHECK(again.ok() && *again == *session);
      break;
    }
    case 2: {
      if (value.size() < 8) break;
      uint64_t document = 0;
      for (int i = 0; i < 8; ++i) document = document << 8 | static_cast<uint8_t>(value[i]);
      std::vector<std::string> ids =
          absl::StrSplit(absl::string_view(value).substr(8), '\n', absl::SkipEmpty());
      const std::vector<std::string> ranked = cluster::RankWorkers(document, ids);
      const std::set<std::string> unique(ids.begin(), ids.end());
      FUZZ_CHECK(ranked.size() == unique.size());
      FUZZ_CHECK(std::set<std::string>(ranked.begin(), ranked.end()) == unique);
      std::reverse(ids.begin(), ids.end());
      FUZZ_CHECK(cluster::RankWorkers(document, ids) == ranked);
      if (!ranked.empty()) {
        std::vector<std::string> survivors(ranked.begin() + 1, ranked.end());
        FUZZ_CHECK(cluster::RankWorkers(document, survivors) == survivors);
      }
      break;
    }
  }
  return 0;
}
