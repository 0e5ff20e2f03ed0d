// Stage-1 block selection for calls of a few queries (decode steps; internal, SelectBlocks
// dispatches). A decode step's single query has up to 64K level-1 summaries per group at a
// million tokens: instead of one warp walking them all (GroupScores) or gathering them into
// dense copies for cuBLAS and reducing with a CTA per head, the summaries are split over
// the whole GPU, read straight from their pages.
#pragma once

#include <cstddef>

#include "tome/kernels/cuda/sparse_attention.h"

namespace tome::kernels::cuda {

// Whether SelectBlocksFew takes these arguments: at most 16 queries, 1 to 16 heads a group,
// head_dim 64 or 128, a top-k of at most 2048 blocks, and some query that does not take all its
// blocks (or scores wanted).
bool SelectBlocksFewTakes(const SelectBlocksArgs& args);

size_t SelectBlocksFewScratchBytes(const SelectBlocksArgs& args);

// SelectBlocks for a call SelectBlocksFewTakes: four launches for all queries and groups.
//   1. per (query, group, chunk of level-2 windows): each head's (max, Σ exp2) on tensor cores;
//   2. per (query, group, chunk of level-1 windows): LSE2 from those parts, then the bf16
//      group sums Sc(p, j) into a scratch row;
//   3. per (query, group, slice of 2048 blocks): the blocks' pooled scores as ordered 16-bit
//      keys in shared memory, and the slice's top-k (block_topk.cuh) as candidates;
//   4. a CTA per (query, group): the top-k of its candidates (skipped when every query's
//      blocks fit one slice: step 3 then writes the selection).
cudaError_t SelectBlocksFew(const SelectBlocksArgs& args, void* scratch, size_t scratch_bytes,
                            cudaStream_t stream);

}  // namespace tome::kernels::cuda
