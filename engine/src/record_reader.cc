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
    std::vector<bool> seen(count, false);
    size_t visited = 0;
    status[b] = source.ReadMany(keys.subspan(first, count), [&](size_t j, absl::string_view value) {
      if (j >= count || seen[j]) return absl::InternalError("the state source read a record twice");
      seen[j] = true;
      ++visited;
      const size_t i = first + j;
      out.sizes[i] = static_cast<int64_t>(value.size());
      if (out.staged(i)) {
        std::memcpy(staging + static_cast<int64_t>(i) * slot_bytes, value.data(), value.size());
      } else {
        out.bytes[i] = std::string(value);
      }
      return absl::OkStatus();
    });
    if (status[b].ok() && visited != count) {
      status[b] = absl::InternalError("the state source visited fewer records than asked for");
    }
  });
  for (const absl::Status& s : status) {
    if (!s.ok()) return s;
  }
  return out;
}

}  // namespace tome::engine
