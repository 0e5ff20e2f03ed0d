#include "staging_pool.h"

#include <utility>

#include "tome/base/status_macros.h"

namespace tome::engine {

StagingPool::StagingPool(Allocator allocate) : allocate_(std::move(allocate)) {}

absl::StatusOr<std::shared_ptr<void>> StagingPool::Take(int64_t bytes) {
  std::pair<int64_t, std::shared_ptr<void>> taken{0, nullptr};
  {
    std::lock_guard<std::mutex> lock(free_->mu);
    if (none_) return nullptr;
    auto& buffers = free_->buffers;
    auto best = buffers.end();  // the smallest free buffer that is large enough
    for (auto it = buffers.begin(); it != buffers.end(); ++it) {
      if (it->first >= bytes && (best == buffers.end() || it->first < best->first)) best = it;
    }
    if (best != buffers.end()) {
      taken = std::move(*best);
      buffers.erase(best);
    }
  }
  if (taken.second == nullptr) {
    TOME_ASSIGN_OR_RETURN(Backend::HostMemory memory, allocate_(bytes));
    if (!memory.device_readable) {
      std::lock_guard<std::mutex> lock(free_->mu);
      none_ = true;
      return nullptr;
    }
    taken = {bytes, std::move(memory.data)};
  }
  void* data = taken.second.get();
  std::weak_ptr<Free> pool = free_;
  return std::shared_ptr<void>(data, [pool, taken = std::move(taken)](void*) mutable {
    if (std::shared_ptr<Free> free = pool.lock()) {
      std::lock_guard<std::mutex> lock(free->mu);
      if (free->buffers.size() < kMaxFree) free->buffers.push_back(std::move(taken));
    }
  });
}

}  // namespace tome::engine
