// A worker's registration record in etcd: the key <prefix>/workers/<worker id> holds the
// JSON value {"address": "host:port"}. Kept apart from the watcher so that the decoder can be
// fuzzed without gRPC.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace tome::services::cluster {

struct WorkerInfo {
  std::string id;
  std::string address;  // host:port routers dial
};

// The etcd key prefix under which workers register.
std::string WorkersPrefix(const std::string& cluster_prefix);
// The registration value of a worker, and back (InvalidArgument for anything else).
std::string EncodeWorkerValue(const WorkerInfo& worker);
absl::StatusOr<WorkerInfo> DecodeWorkerValue(const std::string& id, const std::string& value);

}  // namespace tome::services::cluster
