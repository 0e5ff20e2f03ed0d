// Parallel reads of a stored state's records (Model::Load and PendingLoad): kStateReadBatch
// records per StateSource::ReadMany, the batches on a WorkPool, each record copied by its
// reader into its slot of device-readable staging memory where the caller has some (the
// backend then uploads it in place).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tome/base/work_pool.h"
#include "tome/engine/state_io.h"

namespace tome::engine {

struct ReadRecords {
  std::vector<int64_t> sizes;
  std::vector<std::string> bytes;  // as read; empty where staged
  char* staging = nullptr;
  int64_t slot_bytes = 0;
  // Record i is at staging + i * slot_bytes (it fit its slot), not in bytes[i].
  bool staged(size_t i) const { return staging != nullptr && sizes[i] <= slot_bytes; }
  const char* record(size_t i) const {
    return staged(i) ? staging + static_cast<int64_t>(i) * slot_bytes : bytes[i].data();
  }
};

// Reads `keys` (the source's first error, if any, is returned). With `staging` (room for
// keys.size() slots of `slot_bytes`), records that fit a slot are copied into it; larger
// ones stay in `bytes` for the caller's size checks to refuse.
absl::StatusOr<ReadRecords> ReadStateRecords(StateSource& source,
                                             absl::Span<const StateRecordKey> keys, WorkPool& pool,
                                             char* staging, int64_t slot_bytes);

}  // namespace tome::engine
