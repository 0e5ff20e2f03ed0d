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
//
// Both tiers hold fixed-size slots carved from large allocations (SlotPool): a block's keys
// and values are the two halves of one slot. Tier 2 lives in Backend::AllocateHost memory
// (pinned and mapped on CUDA), so a host hit is uploaded by the device reading it in place,
// with no copy on the host.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tome/engine/state_io.h"

namespace tome {
class WorkPool;
}  // namespace tome

namespace tome::engine {

class Backend;
class SlotPool;

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
  // each device. `read_threads` helper threads read a fetch's store batches in parallel with
  // the caller (0: the caller alone); the StateSource must then serve concurrent GetMany calls.
  BlockCache(std::vector<Backend*> backends, int64_t device_budget_bytes, int64_t host_budget_bytes,
             int read_threads = kDefaultReadThreads);
  static constexpr int kDefaultReadThreads = 3;
  ~BlockCache();

  // Allocates the host tier's memory up to its budget now (a server at start-up) rather than
  // on first use: pinning gigabytes takes a noticeable part of a second, which would
  // otherwise land on the first cold questions. Where the backend's host memory is plain
  // heap memory (the CPU backend), only the first chunk is allocated.
  absl::Status ReserveHostMemory();

  // Keys and values of block `index` of (layer, head) of `source_id`'s stored state, each
  // [rows, width] in the memory of `device` (an index into the backends). The returned
  // pointers keep the pages alive (pinned) even if the cache evicts them meanwhile. `head` is
  // the stored (global) KV group.
  struct Block {
    std::shared_ptr<void> keys, values;
  };
  absl::StatusOr<Block> Get(int device, const std::string& source_id, StateSource& source,
                            int32_t layer, int32_t head, int64_t index, int64_t rows, int64_t width,
                            int64_t element_bytes);

  // Get for many blocks of one layer, in order: the blocks missing from both tiers are read
  // from `source` kStateReadBatch at a time (GetMany, batches in parallel), and every block
  // not on the device is uploaded by one CopyManyFromHost. Where the device reads host-tier
  // slots in place, the call waits for those reads, unless `upload_pins` is given: then the
  // slots read are appended to it and the upload runs in stream order; the caller keeps
  // them until the device's queue has passed it (its next Synchronize or CopyToHost), so
  // that no later fetch refills a slot before the device has read it.
  struct BlockId {
    int32_t head = 0;
    int64_t index = 0;
  };
  absl::StatusOr<std::vector<Block>> GetMany(
      int device, const std::string& source_id, StateSource& source, int32_t layer,
      absl::Span<const BlockId> blocks, int64_t rows, int64_t width, int64_t element_bytes,
      std::vector<std::shared_ptr<void>>* upload_pins = nullptr);

  BlockCacheStats stats();

 private:
  // A block: its source (interned: source_ids_), layer, stored group and index.
  struct Key {
    int64_t source = 0;
    int32_t layer = 0, head = 0;
    int64_t index = 0;
    bool operator==(const Key&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.source, k.layer, k.head, k.index);
    }
  };
  template <typename V>
  struct Lru {
    struct Entry {
      V value;
      int64_t bytes = 0;
      std::list<Key>::iterator position;
    };
    std::list<Key> order;  // front = most recent
    absl::flat_hash_map<Key, Entry> entries;
    int64_t bytes = 0;
    // Adds `key` as the most recent entry, then evicts the least recent ones (never the new
    // one) while over `budget`; returns how many it evicted.
    int64_t Insert(const Key& key, V value, int64_t value_bytes, int64_t budget);
  };
  // The number standing for `source_id` in keys. Called under mu_.
  int64_t InternSource(const std::string& source_id);
  // The pool of `slot_bytes` slots of device `device` (-1: the host tier). Called under mu_.
  absl::StatusOr<std::shared_ptr<void>> TakeSlot(int device, int64_t slot_bytes);
  // A host-tier chunk: from the reserve if one is left, else newly allocated.
  absl::StatusOr<std::shared_ptr<void>> HostChunk(int64_t bytes);

  const std::vector<Backend*> backends_;
  const int64_t device_budget_;
  const int64_t host_budget_;
  const int64_t host_chunk_bytes_;
  std::mutex mu_;
  std::vector<Lru<Block>> devices_;  // one per backend
  Lru<std::shared_ptr<void>> host_;  // the stored bytes: keys, then values
  absl::flat_hash_map<std::string, int64_t> source_ids_;
  bool host_device_readable_ = false;
  std::vector<std::shared_ptr<void>> host_reserve_;  // ReserveHostMemory's unused chunks
  // Slot pools by (device or -1, slot bytes).
  std::map<std::pair<int, int64_t>, std::unique_ptr<SlotPool>> pools_;
  BlockCacheStats stats_;
  std::unique_ptr<WorkPool> read_pool_;
};

}  // namespace tome::engine
