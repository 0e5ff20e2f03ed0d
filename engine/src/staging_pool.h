// Device-readable host memory for reading stored states (Model::Load and its background
// reads), kept for reuse: pinning tens of megabytes costs milliseconds, a noticeable part of
// a cold question. A buffer taken goes back to the pool when its last holder lets go (or is
// freed, once the pool is gone).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "backend.h"

namespace tome::engine {

class StagingPool {
 public:
  // Backend::AllocateHost of the backend that reads the memory.
  using Allocator = std::function<absl::StatusOr<Backend::HostMemory>(int64_t bytes)>;
  explicit StagingPool(Allocator allocate);

  // At least `bytes` of host memory the backend reads in place (Backend::AllocateHost's
  // device_readable), or null where the backend has none (the CPU backend).
  absl::StatusOr<std::shared_ptr<void>> Take(int64_t bytes);

 private:
  struct Free {
    std::mutex mu;
    std::vector<std::pair<int64_t, std::shared_ptr<void>>> buffers;  // (bytes, memory)
  };
  // More free buffers than this are freed rather than kept.
  static constexpr size_t kMaxFree = 4;

  const Allocator allocate_;
  std::shared_ptr<Free> free_ = std::make_shared<Free>();
  bool none_ = false;  // the backend has no device-readable memory (guarded by free_->mu)
};

}  // namespace tome::engine
