#include "pending_load.h"

#include <algorithm>
#include <utility>

namespace tome::engine {

PendingLoad::PendingLoad(std::shared_ptr<StateSource> source, std::vector<Layer> layers,
                         int64_t slot_bytes, int read_threads, int ahead,
                         std::vector<std::shared_ptr<void>> staging)
    : source_(std::move(source)),
      layers_(std::move(layers)),
      slot_bytes_(slot_bytes),
      ahead_(std::max(1, ahead)),
      pool_(read_threads),
      built_(layers_.size()),
      read_(layers_.size()),
      free_staging_(std::move(staging)),
      layer_staging_(layers_.size()),
      reader_([this] { ReadAll(); }) {}

PendingLoad::~PendingLoad() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  reader_.join();
}

void PendingLoad::ReadAll() {
  for (size_t i = 0; i < layers_.size(); ++i) {
    std::shared_ptr<void> staging;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || i < released_ + static_cast<size_t>(ahead_); });
      if (stop_) return;
      if (!free_staging_.empty()) {
        staging = std::move(free_staging_.back());
        free_staging_.pop_back();
      }
    }
    absl::StatusOr<ReadRecords> read = ReadStateRecords(
        *source_, layers_[i].keys, pool_, static_cast<char*>(staging.get()), slot_bytes_);
    const bool failed = !read.ok();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (failed && failure_.ok()) {
        failure_ = read.status();
        failed_at_ = i;
      } else if (!failed) {
        read_[i] = std::move(read).value();
        layer_staging_[i] = std::move(staging);
      }
    }
    cv_.notify_all();
    if (failed) return;
  }
}

absl::StatusOr<const ReadRecords*> PendingLoad::Wait(size_t i) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return read_[i].has_value() || (!failure_.ok() && i >= failed_at_); });
  if (!failure_.ok() && i >= failed_at_) return failure_;
  return &*read_[i];
}

absl::Status PendingLoad::failure() {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

void PendingLoad::Release(size_t i, const absl::Status& built) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    read_[i].reset();
    if (!built.ok() && failure_.ok()) {
      failure_ = built;
      failed_at_ = i;
    }
    if (layer_staging_[i]) free_staging_.push_back(std::move(layer_staging_[i]));
    ++released_;
  }
  cv_.notify_all();
}

}  // namespace tome::engine
