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

}  // namespace tome::engine
