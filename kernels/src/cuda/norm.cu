#include "common.cuh"
#include "tome/kernels/cuda/norm.h"

namespace tome::kernels::cuda {
namespace {

constexpr int kWarps = 4;

// One warp per (row, group).
template <typename T>
__global__ void RmsNormKernel(T* x, const float* w, int64_t rows, int64_t groups, int64_t n,
                              int64_t row_stride, float eps) {
  const int64_t item = blockIdx.x * int64_t(kWarps) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (item >= rows * groups) return;
  T* xg = x + (item / groups) * row_stride + (item % groups) * n;
  float sum_sq = 0.0f;
  for (int64_t i = lane; i < n; i += 32) {
    const float v = ToFloat(xg[i]);
    sum_sq += v * v;
  }
  sum_sq = WarpSum(sum_sq);
  const float inv = 1.0f / sqrtf(sum_sq / static_cast<float>(n) + eps);
  for (int64_t i = lane; i < n; i += 32) {
    xg[i] = FromFloat<T>(Round<T>(ToFloat(xg[i]) * inv) * w[i]);
  }
}

// One CTA per (row, group), for long groups (a decode step's 4096-wide hidden row would
// otherwise be a single warp on an idle GPU).
constexpr int kWideThreads = 256;
constexpr int64_t kWideFrom = 1024;

template <typename T>
__global__ void __launch_bounds__(kWideThreads)
    RmsNormWideKernel(T* x, const float* w, int64_t groups, int64_t n, int64_t row_stride,
                      float eps) {
  __shared__ float warp_sums[kWideThreads / 32];
  const int64_t item = blockIdx.x;
  T* xg = x + (item / groups) * row_stride + (item % groups) * n;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += kWideThreads) {
    const float v = ToFloat(xg[i]);
    sum_sq += v * v;
  }
  sum_sq = WarpSum(sum_sq);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum_sq;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int i = 0; i < kWideThreads / 32; ++i) total += warp_sums[i];
  const float inv = 1.0f / sqrtf(total / static_cast<float>(n) + eps);
  for (int64_t i = threadIdx.x; i < n; i += kWideThreads) {
    xg[i] = FromFloat<T>(Round<T>(ToFloat(xg[i]) * inv) * w[i]);
  }
}

template <typename T>
cudaError_t RmsNormT(T* x, const float* w, int64_t rows, int64_t groups, int64_t n,
                     int64_t row_stride, float eps, cudaStream_t stream) {
  const int64_t items = rows * groups;
  if (items == 0) return cudaSuccess;
  if (n >= kWideFrom && items <= 0x7fffffff) {
    RmsNormWideKernel<T><<<static_cast<unsigned>(items), kWideThreads, 0, stream>>>(
        x, w, groups, n, row_stride, eps);
  } else {
    RmsNormKernel<T><<<CeilDiv(items, kWarps), kWarps * 32, 0, stream>>>(x, w, rows, groups, n,
                                                                          row_stride, eps);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t RmsNorm(bf16* x, const float* w, int64_t rows, int64_t groups, int64_t n,
                    int64_t row_stride, float eps, cudaStream_t stream) {
  return RmsNormT(x, w, rows, groups, n, row_stride, eps, stream);
}
cudaError_t RmsNorm(float* x, const float* w, int64_t rows, int64_t groups, int64_t n,
                    int64_t row_stride, float eps, cudaStream_t stream) {
  return RmsNormT(x, w, rows, groups, n, row_stride, eps, stream);
}

}  // namespace tome::kernels::cuda
