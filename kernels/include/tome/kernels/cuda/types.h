// Types shared by the CUDA kernel entry points. Every entry point takes raw device pointers,
// sizes and row strides (in elements), enqueues its work on `stream` and returns the launch
// error (cudaGetLastError), so failures surface at the call that caused them.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "tome/kernels/paged_rows.h"

namespace tome::kernels::cuda {

using bf16 = __nv_bfloat16;

// Paged matrices on the device: `pages` is a device array of device page pointers.
using DevicePagedRows = PagedRows<bf16>;

// Most KV groups a sparse-attention launch takes (views travel by value in the launch).
inline constexpr int kMaxGroups = 8;

}  // namespace tome::kernels::cuda
