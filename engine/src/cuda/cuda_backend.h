// The CUDA backend: bf16 weights, activations, KV pages and summaries; fp32 norm vectors,
// Lightning states and logits. Ops are enqueued on one stream; CUDA and cuBLAS errors are
// kept (the first one) and returned by the next Synchronize().
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "backend.h"

namespace tome::engine {

// A backend on CUDA device `device`. FailedPrecondition when no such device is usable.
absl::StatusOr<std::unique_ptr<Backend>> NewCudaBackend(int device);

// Tensor parallelism: one NCCL communicator per rank for devices first_device ..
// first_device + world - 1 (NVLink multicast off: NCCL_NVLS_ENABLE=0 is set first).
// Unimplemented in a build without NCCL.
struct NcclGroup;
absl::StatusOr<std::shared_ptr<NcclGroup>> NewNcclGroup(int first_device, int world);
// Rank `rank` of `group` on `device`: AllReduceSum and AllGatherCols run over NCCL on the
// backend's stream. The backend owns (and destroys) the rank's communicator; create and
// drive it from one thread per rank.
absl::StatusOr<std::unique_ptr<Backend>> NewCudaBackend(int device,
                                                        std::shared_ptr<NcclGroup> group,
                                                        int rank);

}  // namespace tome::engine
