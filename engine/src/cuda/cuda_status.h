// CUDA and cuBLAS results as absl::Status (the one place errors are converted).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tome::engine {

// OK for cudaSuccess; ResourceExhausted for allocation failures; Internal otherwise. The
// message names `what` and the CUDA error.
absl::Status CudaStatus(cudaError_t error, absl::string_view what);
absl::Status CublasStatus(cublasStatus_t status, absl::string_view what);

}  // namespace tome::engine
