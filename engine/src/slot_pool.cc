#include "slot_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tome::engine {

SlotPool::SlotPool(int64_t slot_bytes, int64_t slots_per_chunk, ChunkAllocator allocate)
    : slot_bytes_(slot_bytes),
      slots_per_chunk_(std::max<int64_t>(1, slots_per_chunk)),
      allocate_(std::move(allocate)) {}

absl::StatusOr<std::shared_ptr<void>> SlotPool::Take() {
  if (slot_bytes_ <= 0) return absl::InvalidArgumentError("a slot pool needs a positive slot size");
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->free.empty()) {
    absl::StatusOr<std::shared_ptr<void>> chunk = allocate_(slot_bytes_ * slots_per_chunk_);
    if (!chunk.ok()) return chunk.status();
    if (*chunk == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("no memory for ", slots_per_chunk_, " slots of ", slot_bytes_, " bytes"));
    }
    char* base = static_cast<char*>(chunk->get());
    for (int64_t i = slots_per_chunk_ - 1; i >= 0; --i) {
      state_->free.push_back(base + i * slot_bytes_);
    }
    state_->chunks.push_back(*std::move(chunk));
  }
  void* slot = state_->free.back();
  state_->free.pop_back();
  // The deleter holds the state, so slots outlive the pool safely.
  return std::shared_ptr<void>(slot, [state = state_](void* p) {
    std::lock_guard<std::mutex> lock(state->mu);
    state->free.push_back(p);
  });
}

int64_t SlotPool::chunks() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return static_cast<int64_t>(state_->chunks.size());
}

int64_t SlotPool::free_slots() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return static_cast<int64_t>(state_->free.size());
}

}  // namespace tome::engine
