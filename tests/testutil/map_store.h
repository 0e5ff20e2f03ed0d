// Engine state records in memory (tests of save/restore without a database).
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "tome/engine/state_io.h"

namespace tome::testing {

// With `keep_longest_only`, it behaves as the context store does: a longer record of a
// block or page replaces the shorter ones, and serves their reads. Counts reads.
class MapStore : public engine::StateSink, public engine::StateSource {
 public:
  explicit MapStore(bool keep_longest_only = false) : keep_longest_only_(keep_longest_only) {}

  absl::Status Put(const engine::StateRecordKey& key, absl::string_view bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (keep_longest_only_ && key.rows > 0) {
      records_.erase(records_.lower_bound(Key({key.kind, key.layer, key.head, key.index, 0})),
                     records_.lower_bound(Key(key)));
    }
    records_[Key(key)] = std::string(bytes);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Get(const engine::StateRecordKey& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++reads_;
    auto it = records_.lower_bound(Key(key));
    if (it == records_.end() || std::get<0>(it->first) != int(key.kind) ||
        std::get<1>(it->first) != key.layer || std::get<2>(it->first) != key.head ||
        std::get<3>(it->first) != key.index) {
      return absl::NotFoundError("no record");
    }
    return it->second;
  }
  std::vector<absl::StatusOr<std::string>> GetMany(
      absl::Span<const engine::StateRecordKey> keys) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++batches_;
    }
    return StateSource::GetMany(keys);
  }
  int64_t reads() {
    std::lock_guard<std::mutex> lock(mu_);
    return reads_;
  }
  // GetMany calls (each counts its records in reads() too).
  int64_t batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }

  using Records = std::map<std::tuple<int, int, int, int64_t, int64_t>, std::string>;
  // Changes the records under the store's lock (while a background load may be reading).
  void Edit(const std::function<void(Records&)>& edit) {
    std::lock_guard<std::mutex> lock(mu_);
    edit(records_);
  }

  Records records_;

 private:
  static std::tuple<int, int, int, int64_t, int64_t> Key(const engine::StateRecordKey& k) {
    return {int(k.kind), k.layer, k.head, k.index, k.rows};
  }
  bool keep_longest_only_;
  std::mutex mu_;
  int64_t reads_ = 0;
  int64_t batches_ = 0;
};

}  // namespace tome::testing
