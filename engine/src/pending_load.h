// The sparse layers of a sequence opened on demand, read in the background so that the
// question's forward pass starts once the Lightning states are in (Model::Load with
// EngineOptions::overlap_state_loading): a reader thread reads each sparse layer's records
// (its last resident KV blocks and its block summaries) in layer order, at most `ahead`
// layers before the forward pass, which builds the layer's pages when it first reaches it
// (Model::AwaitLayer) while the reader goes on with the next. Everything but the reader's
// own fields (guarded by its mutex) is used under the engine's forward lock. A read error is
// kept: waiting for that layer or any later one returns it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "record_reader.h"
#include "sequence_state.h"
#include "tome/base/work_pool.h"
#include "tome/engine/state_io.h"

namespace tome::engine {

class PendingLoad {
 public:
  struct Layer {
    int64_t layer = 0;
    int64_t absent_pages = 0;  // KV pages left in storage, before the records' pages
    std::vector<StateRecordKey> keys;
    int64_t bytes = 0;  // of the pages it builds (Sequence::OwnedBytes counts them early)
  };
  // `staging`: `ahead` buffers of device-readable host memory, each with room for the
  // largest layer's records in slots of `slot_bytes` (empty: records stay in strings).
  // `source` must serve GetMany from several threads at once.
  PendingLoad(std::shared_ptr<StateSource> source, std::vector<Layer> layers, int64_t slot_bytes,
              int read_threads, int ahead, std::vector<std::shared_ptr<void>> staging);
  ~PendingLoad();  // stops the reader after the read in progress
  PendingLoad(const PendingLoad&) = delete;
  PendingLoad& operator=(const PendingLoad&) = delete;

  const std::vector<Layer>& layers() const { return layers_; }
  // Blocks until layers()[i]'s records are read; the load's error if it failed there or
  // before. Layers are waited for in order.
  absl::StatusOr<const ReadRecords*> Wait(size_t i);
  // The load's error once a read has failed (OK before).
  absl::Status failure();
  // Layer i is built (or failed to be, with `built`'s error, which then becomes the load's):
  // its records and staging go, and the reader may read further.
  void Release(size_t i, const absl::Status& built);
  // The pages built from layers()[i] by the first state to reach it, shared by every state
  // loaded from this load (states copy them, sharing the pages); empty until built.
  std::optional<SparseLayerState>& built(size_t i) { return built_[i]; }

 private:
  void ReadAll();

  const std::shared_ptr<StateSource> source_;
  const std::vector<Layer> layers_;
  const int64_t slot_bytes_;
  const int ahead_;
  WorkPool pool_;
  std::vector<std::optional<SparseLayerState>> built_;

  std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_: per layer its records from being read until released; the first error
  // (of a read or of building a layer) and its layer; the staging buffers not in use; how many
  // layers were released; stop_ set by the destructor.
  std::vector<std::optional<ReadRecords>> read_;
  absl::Status failure_;
  size_t failed_at_ = 0;
  std::vector<std::shared_ptr<void>> free_staging_;
  std::vector<std::shared_ptr<void>> layer_staging_;  // the buffer layer i was read into
  size_t released_ = 0;
  bool stop_ = false;
  std::thread reader_;  // last: starts once the fields above exist
};

}  // namespace tome::engine
