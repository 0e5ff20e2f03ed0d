// Tensor-parallel ranks inside one process over backends whose memory the host reads and
// writes directly (the CPU backend): each rank's backend is wrapped so that AllReduceSum
// and AllGatherCols meet the other ranks' calls at a barrier and combine host memory. Sums
// run in rank order on every rank, so all ranks hold identical results. Used to run the
// sharded forward pass on the CPU (tests compare it with one rank in fp32).
#pragma once

#include <memory>
#include <vector>

#include "backend.h"

namespace tome::engine {

// Wraps `ranks` (rank i = ranks[i]) into one group. Each returned backend forwards every op
// to its wrapped one and must be driven by its own thread (collectives block until every
// rank has called them).
std::vector<std::unique_ptr<Backend>> NewLocalCollectiveGroup(
    std::vector<std::unique_ptr<Backend>> ranks);

}  // namespace tome::engine
