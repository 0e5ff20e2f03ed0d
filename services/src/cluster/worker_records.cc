#include "cluster/worker_records.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace tome::services::cluster {

std::string WorkersPrefix(const std::string& cluster_prefix) {
  return absl::StrCat(cluster_prefix, "/workers/");
}

std::string EncodeWorkerValue(const WorkerInfo& worker) {
  return nlohmann::json{{"address", worker.address}}.dump();
}

absl::StatusOr<WorkerInfo> DecodeWorkerValue(const std::string& id, const std::string& value) {
  nlohmann::json j = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("address") || !j["address"].is_string() ||
      j["address"].get<std::string>().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker ", id, " registered a value without an address"));
  }
  return WorkerInfo{id, j["address"].get<std::string>()};
}

}  // namespace tome::services::cluster
