// A kernel that only waits: measurement aid. Queued ahead of a forward call it holds the GPU
// while the host issues the call's ops, so that their timings show the GPU's own time and
// not the host's issue rate (the CUDA backend's TOME_CUDA_OP_TIMES=timeline).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace tome::kernels::cuda {

// One thread that returns about `microseconds` after it starts.
cudaError_t Spin(int64_t microseconds, cudaStream_t stream);

}  // namespace tome::kernels::cuda
