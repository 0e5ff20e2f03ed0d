// The block cache of storage-backed sparse attention: a sequence loaded "on demand" keeps
// its Lightning states and block summaries resident but none of its stored KV blocks; a
// sparse layer fetches the blocks its queries select, from
//   tier 1: backend memory (the GPU block pool; host memory on the CPU backend),
//   tier 2: host memory holding the stored bytes,
//   tier 3: the StateSource (RocksDB),
// each tier a least-recently-used set within its byte budget. Blocks in use by a running
// forward pass are pinned (held) until it ends. One cache may serve many sequences (each
// names its source by an id that must change whenever the stored blocks could: a document
// id plus its ingestion, say). With tensor parallelism each rank's device has a tier 1 of
// its own (the budget is per device) and the ranks share tier 2. Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tome/engine/state_io.h"

namespace tome::engine {

class Backend;
class Buffer;

struct BlockCacheStats {
  int64_t device_hits = 0;
  int64_t host_hits = 0;
  int64_t source_reads = 0;
  int64_t bytes_read = 0;  // from the source
  int64_t device_evictions = 0;
  int64_t device_bytes = 0;  // resident now
  int64_t host_bytes = 0;
};

class BlockCache {
 public:
  // backends[i] is device i's (a tensor-parallel rank's); device_budget_bytes applies to
  // each device.
  BlockCache(std::vector<Backend*> backends, int64_t device_budget_bytes,
             int64_t host_budget_bytes);

  // Keys and values of block `index` of (layer, head) of `source_id`'s stored state, each
  // [rows, width] in the memory of `device` (an index into the backends). The returned
  // pointers keep the pages alive (pinned) even if the cache evicts them meanwhile. `head` is
  // the stored (global) KV group.
  struct Block {
    std::shared_ptr<Buffer> keys, values;
  };
  absl::StatusOr<Block> Get(int device, const std::string& source_id, StateSource& source,
                            int32_t layer, int32_t head, int64_t index, int64_t rows, int64_t width,
                            int64_t element_bytes);

  // Get for many blocks of one layer, in order: the blocks missing from both tiers are read
  // from `source` kStateReadBatch at a time (GetMany) and uploaded before the next batch.
  struct BlockId {
    int32_t head = 0;
    int64_t index = 0;
  };
  absl::StatusOr<std::vector<Block>> GetMany(int device, const std::string& source_id,
                                             StateSource& source, int32_t layer,
                                             absl::Span<const BlockId> blocks, int64_t rows,
                                             int64_t width, int64_t element_bytes);

  BlockCacheStats stats();

 private:
  // GetMany of at most kStateReadBatch blocks.
  absl::StatusOr<std::vector<Block>> GetBatch(int device, const std::string& source_id,
                                              StateSource& source, int32_t layer,
                                              absl::Span<const BlockId> blocks, int64_t rows,
                                              int64_t width, int64_t element_bytes);

  using Key = std::tuple<std::string, int32_t, int32_t, int64_t>;
  template <typename V>
  struct Lru {
    std::list<Key> order;  // front = most recent
    std::map<Key, std::pair<V, std::list<Key>::iterator>> entries;
    int64_t bytes = 0;
  };

  const std::vector<Backend*> backends_;
  const int64_t device_budget_;
  const int64_t host_budget_;
  std::mutex mu_;
  std::vector<Lru<Block>> devices_;  // one per backend
  Lru<std::string> host_;
  BlockCacheStats stats_;
};

}  // namespace tome::engine
