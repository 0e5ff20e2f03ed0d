#include "record_reader.h"

#include <algorithm>
#include <cstring>

namespace tome::engine {

absl::StatusOr<ReadRecords> ReadStateRecords(StateSource& source,
                                             absl::Span<const StateRecordKey> keys, WorkPool& pool,
                                             char* staging, int64_t slot_bytes) {
  ReadRecords out;
  out.sizes.resize(keys.size());
  out.bytes.resize(keys.size());
  out.staging = staging;
  out.slot_bytes = slot_bytes;
  const size_t batches = (keys.size() + kStateReadBatch - 1) / kStateReadBatch;
  std::vector<absl::Status> status(batches);
  pool.Run(batches, [&](size_t b) {
    const size_t first = b * kStateReadBatch;
    const size_t count = std::min(kStateReadBatch, keys.size() - first);
    std::vector<absl::StatusOr<std::string>> read = source.GetMany(keys.subspan(first, count));
    if (read.size() != count) {
      status[b] = absl::InternalError("the state source answered a different number of records");
      return;
    }
    for (size_t j = 0; j < count; ++j) {
      const size_t i = first + j;
      if (!read[j].ok()) {
        status[b] = read[j].status();
        return;
      }
      out.sizes[i] = static_cast<int64_t>(read[j]->size());
      if (out.staged(i)) {
        std::memcpy(staging + static_cast<int64_t>(i) * slot_bytes, read[j]->data(),
                    read[j]->size());
      } else {
        out.bytes[i] = std::move(*read[j]);
      }
    }
  });
  for (const absl::Status& s : status) {
    if (!s.ok()) return s;
  }
  return out;
}

}  // namespace tome::engine
