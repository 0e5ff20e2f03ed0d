// The model state of one sequence: per layer either a Lightning recurrent state or a sparse
// layer's paged keys/values and block summaries (one PagedBuffer per KV head).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "paged_buffer.h"
#include "tensor.h"
#include "tome/engine/block_cache.h"
#include "tome/engine/config.h"
#include "tome/engine/state_io.h"

namespace tome::engine {

class PendingLoad;

struct SparseLayerState {
  std::vector<PagedBuffer> keys;    // per KV head: rows = tokens, pages = token blocks
  std::vector<PagedBuffer> values;  // likewise
  std::vector<PagedBuffer> k1;      // per KV head: level-1 summaries
  std::vector<PagedBuffer> k2;      // per KV head: level-2 summaries
};

struct LayerState {
  MixerType type;
  Buffer lightning;  // [H · d, d] fp32 (Lightning layers)
  SparseLayerState sparse;
};

// Where a sequence loaded on demand fetches its stored KV blocks from.
struct StoredBlocks {
  std::shared_ptr<StateSource> source;
  std::shared_ptr<BlockCache> cache;
  std::string source_id;
};

struct SequenceState {
  int64_t num_tokens = 0;
  std::vector<LayerState> layers;
  // Set for sequences whose stored KV blocks stay in storage until selected.
  std::shared_ptr<const StoredBlocks> stored;
  // Opened with its sparse layers still being read (pending_load.h): unapplied[l] marks the
  // layers whose pages the forward pass takes from `pending` when it reaches them (until then
  // they hold no pages). Null once every layer is in.
  std::shared_ptr<PendingLoad> pending;
  std::vector<bool> unapplied;
  // Tensor parallelism: this object is rank 0's share of the state (its heads and KV
  // groups); ranks 1 .. N-1 hold theirs here (parallel_model.h).
  std::vector<std::unique_ptr<SequenceState>> other_ranks;
};

}  // namespace tome::engine
