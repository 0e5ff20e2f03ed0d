// Equal-sized slots carved from large allocations and handed out as shared pointers that
// give their slot back when the last holder lets go: the block cache's 32 KiB pages without
// an allocator call (a driver call on the GPU, pinning on the host) per page. Chunks stay
// until the pool and every slot taken from it are gone; a slot's memory is reused by the
// next Take after its release, so on a device the caller must order that reuse after the
// work that read the slot (the block cache does: one stream per device).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"

namespace tome::engine {

class SlotPool {
 public:
  // Returns a chunk of at least the bytes asked for (kept alive by the shared pointer).
  using ChunkAllocator = std::function<absl::StatusOr<std::shared_ptr<void>>(int64_t bytes)>;

  SlotPool(int64_t slot_bytes, int64_t slots_per_chunk, ChunkAllocator allocate);

  absl::StatusOr<std::shared_ptr<void>> Take();

  int64_t slot_bytes() const { return slot_bytes_; }
  int64_t chunks() const;
  int64_t free_slots() const;

 private:
  struct State {
    mutable std::mutex mu;
    std::vector<void*> free;
    std::vector<std::shared_ptr<void>> chunks;
  };
  const int64_t slot_bytes_;
  const int64_t slots_per_chunk_;
  const ChunkAllocator allocate_;
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace tome::engine
