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
  out.staged.assign(keys.size(), false);
  out.staging = staging;
  out.slot_bytes = slot_bytes;
  const size_t batches = (keys.size() + kStateReadBatch - 1) / kStateReadBatch;
  std::vector<absl::Status> status(batches);
  // std::vector<bool> packs bits: each batch records its staged flags in its own bytes.
  std::vector<char> staged(keys.size(), 0);
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
      if (staging != nullptr && out.sizes[i] <= slot_bytes) {
        std::memcpy(staging + static_cast<int64_t>(i) * slot_bytes, read[j]->data(),
                    read[j]->size());
        staged[i] = 1;
      } else {
        out.bytes[i] = std::move(*read[j]);
      }
    }
  });
  for (const absl::Status& s : status) {
    if (!s.ok()) return s;
  }
  for (size_t i = 0; i < keys.size(); ++i) out.staged[i] = staged[i] != 0;
  return out;
}

}  // namespace tome::engine
