// Block summaries (WindowMeans), and paged rows gathered into (GatherRows) or scattered
// from (ScatterRows) a dense matrix.
#include "common.cuh"
#include "tome/kernels/cuda/sparse_attention.h"

namespace tome::kernels::cuda {
namespace {

// One CTA per window, one thread per column (fp32 accumulation in row order, as the CPU).
__global__ void WindowMeansKernel(DevicePagedRows keys, int64_t first_window, int64_t window,
                                  int64_t stride, bf16* out, int64_t out_stride) {
  WaitForPriorKernels();
  const int64_t w = blockIdx.x;
  const int64_t start = (first_window + w) * stride;
  const float inv = 1.0f / static_cast<float>(window);
  for (int64_t c = threadIdx.x; c < keys.width; c += blockDim.x) {
    float sum = 0.0f;
    for (int64_t r = start; r < start + window; ++r) sum += ToFloat(PagedRow(keys, r)[c]);
    out[w * out_stride + c] = FromFloat<bf16>(sum * inv);
  }
}

// 8 bf16 (16 bytes) per thread when rows allow it.
__global__ void GatherKernel(DevicePagedRows rows, int64_t first_row, int64_t n, bf16* out) {
  WaitForPriorKernels();
  const int64_t vecs_per_row = rows.width / 8;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * vecs_per_row;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / vecs_per_row, c = e % vecs_per_row;
    reinterpret_cast<uint4*>(out + r * rows.width)[c] =
        reinterpret_cast<const uint4*>(PagedRow(rows, first_row + r))[c];
  }
}

__global__ void GatherScalarKernel(DevicePagedRows rows, int64_t first_row, int64_t n,
                                   bf16* out) {
  WaitForPriorKernels();
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * rows.width;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / rows.width, c = e % rows.width;
    out[e] = PagedRow(rows, first_row + r)[c];
  }
}

// 8 bf16 (16 bytes) per thread: the scatter of appended rows into their pages.
__global__ void ScatterKernel(DevicePagedRows rows, int64_t first_row, int64_t n, const bf16* src,
                              int64_t src_stride) {
  WaitForPriorKernels();
  const int64_t vecs_per_row = rows.width / 8;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * vecs_per_row;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / vecs_per_row, c = e % vecs_per_row;
    reinterpret_cast<uint4*>(const_cast<bf16*>(PagedRow(rows, first_row + r)))[c] =
        reinterpret_cast<const uint4*>(src + r * src_stride)[c];
  }
}

__global__ void ScatterScalarKernel(DevicePagedRows rows, int64_t first_row, int64_t n,
                                    const bf16* src, int64_t src_stride) {
  WaitForPriorKernels();
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * rows.width;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / rows.width, c = e % rows.width;
    const_cast<bf16*>(PagedRow(rows, first_row + r))[c] = src[r * src_stride + c];
  }
}

}  // namespace

cudaError_t WindowMeans(const DevicePagedRows& keys, int64_t first_window, int64_t num_windows,
                        int64_t window, int64_t stride, bf16* out, int64_t out_stride,
                        cudaStream_t stream) {
  if (num_windows == 0) return cudaSuccess;
  const int threads = keys.width < 256 ? static_cast<int>((keys.width + 31) / 32 * 32) : 256;
  return LaunchAfterPrior(WindowMeansKernel, static_cast<unsigned>(num_windows), threads, 0, stream,
                          keys, first_window, window, stride, out, out_stride);
}

cudaError_t GatherRows(const DevicePagedRows& rows, int64_t first_row, int64_t n, bf16* out,
                       cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  // Page starts are 256-byte aligned allocations, so rows of a multiple of 8 elements are
  // 16-byte aligned.
  if (rows.width % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0) {
    return LaunchAfterPrior(GatherKernel, GridFor(n * rows.width / 8, 256), 256, 0, stream, rows,
                            first_row, n, out);
  } else {
    return LaunchAfterPrior(GatherScalarKernel, GridFor(n * rows.width, 256), 256, 0, stream, rows,
                            first_row, n, out);
  }
}

cudaError_t ScatterRows(const DevicePagedRows& rows, int64_t first_row, int64_t n,
                        const bf16* src, int64_t src_stride, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (rows.width % 8 == 0 && src_stride % 8 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0) {
    return LaunchAfterPrior(ScatterKernel, GridFor(n * rows.width / 8, 256), 256, 0, stream, rows,
                            first_row, n, src, src_stride);
  } else {
    return LaunchAfterPrior(ScatterScalarKernel, GridFor(n * rows.width, 256), 256, 0, stream, rows,
                            first_row, n, src, src_stride);
  }
}

}  // namespace tome::kernels::cuda
