#include "common.cuh"
#include "tome/kernels/cuda/norm.h"

namespace tome::kernels::cuda {
namespace {

constexpr int kWarps = 4;

// One warp per (row, group).
template <typename T>
__global__ void RmsNormKernel(T* x, const float* w, int64_t rows, int64_t groups, int64_t n,
                              int64_t row_stride, float eps) {
  WaitForPriorKernels();
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

// 1 / sqrt(mean of squares + eps) over a CTA of kWideThreads, from each thread's sum of squares.
__device__ __forceinline__ float InverseRms(float sum_sq, int64_t n, float eps) {
  __shared__ float warp_sums[kWideThreads / 32];
  sum_sq = WarpSum(sum_sq);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum_sq;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int i = 0; i < kWideThreads / 32; ++i) total += warp_sums[i];
  return 1.0f / sqrtf(total / static_cast<float>(n) + eps);
}

template <typename T>
__global__ void __launch_bounds__(kWideThreads)
    RmsNormWideKernel(T* x, const float* w, int64_t groups, int64_t n, int64_t row_stride,
                      float eps) {
  WaitForPriorKernels();
  const int64_t item = blockIdx.x;
  T* xg = x + (item / groups) * row_stride + (item % groups) * n;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += kWideThreads) {
    const float v = ToFloat(xg[i]);
    sum_sq += v * v;
  }
  const float inv = InverseRms(sum_sq, n, eps);
  for (int64_t i = threadIdx.x; i < n; i += kWideThreads) {
    xg[i] = FromFloat<T>(Round<T>(ToFloat(xg[i]) * inv) * w[i]);
  }
}

// The wide kernel for bf16 rows in 16-byte vectors held in registers between the two passes
// (one global read of x; a scalar loop would wait on a load every iteration).
constexpr int kMaxVecsPerThread = 4;  // n <= 8 · 256 · 4

// Writes the normalised row held in v (this thread's 16-byte vectors c = threadIdx.x +
// i·kWideThreads of an n-element bf16 row) to dst; kGate: times bf16(sigmoid(z)) (SigmoidMul's
// rounding) for the gate vectors z of the same layout.
template <bool kGate = false>
__device__ __forceinline__ void NormalizeVecs(uint4 (&v)[kMaxVecsPerThread], const float* w,
                                              int64_t n, float eps, bf16* dst,
                                              const uint4* z = nullptr) {
  const int vecs = static_cast<int>(n / 8);
  float sum_sq = 0.0f;
#pragma unroll
  for (int i = 0; i < kMaxVecsPerThread; ++i) {
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v[i]);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float2 f = __bfloat1622float2(h[k]);
      sum_sq += f.x * f.x + f.y * f.y;
    }
  }
  const float inv = InverseRms(sum_sq, n, eps);
#pragma unroll
  for (int i = 0; i < kMaxVecsPerThread; ++i) {
    const int c = threadIdx.x + i * kWideThreads;
    if (c >= vecs) break;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&v[i]);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float2 f = __bfloat1622float2(h[k]);
      const float2 wk = *reinterpret_cast<const float2*>(w + 8 * c + 2 * k);
      h[k] = __floats2bfloat162_rn(Round<bf16>(f.x * inv) * wk.x, Round<bf16>(f.y * inv) * wk.y);
      if constexpr (kGate) {
        const float2 x = __bfloat1622float2(h[k]);
        const float2 g = __bfloat1622float2(reinterpret_cast<const __nv_bfloat162*>(&z[i])[k]);
        h[k] = __floats2bfloat162_rn(x.x * Round<bf16>(1.0f / (1.0f + expf(-g.x))),
                                     x.y * Round<bf16>(1.0f / (1.0f + expf(-g.y))));
      }
    }
    reinterpret_cast<uint4*>(dst)[c] = v[i];
  }
}

// This thread's vectors of an n-element bf16 row (zeros past the row).
__device__ __forceinline__ void LoadVecs(const bf16* row, int64_t n,
                                         uint4 (&v)[kMaxVecsPerThread]) {
  const int vecs = static_cast<int>(n / 8);
#pragma unroll
  for (int i = 0; i < kMaxVecsPerThread; ++i) {
    const int c = threadIdx.x + i * kWideThreads;
    v[i] = c < vecs ? reinterpret_cast<const uint4*>(row)[c] : make_uint4(0, 0, 0, 0);
  }
}

__global__ void __launch_bounds__(kWideThreads)
    RmsNormWideVecKernel(bf16* x, const float* w, int64_t groups, int64_t n, int64_t row_stride,
                         float eps) {
  WaitForPriorKernels();
  bf16* xg = x + (blockIdx.x / groups) * row_stride + (blockIdx.x % groups) * n;
  uint4 v[kMaxVecsPerThread];
  LoadVecs(xg, n, v);
  NormalizeVecs(v, w, n, eps, xg);
}

// One CTA per row: RmsNormWideVecKernel (one group), then x ⊙ bf16(sigmoid(z)).
__global__ void __launch_bounds__(kWideThreads)
    RmsNormSigmoidMulKernel(bf16* x, int64_t x_stride, const float* w, int64_t n, const bf16* z,
                            int64_t z_stride, float eps) {
  WaitForPriorKernels();
  bf16* xr = x + blockIdx.x * x_stride;
  uint4 v[kMaxVecsPerThread], zv[kMaxVecsPerThread];
  LoadVecs(xr, n, v);
  LoadVecs(z + blockIdx.x * z_stride, n, zv);
  NormalizeVecs<true>(v, w, n, eps, xr, zv);
}

// One CTA per row: h += bf16(alpha·x) (the AddScaled rounding; no x: h as it is), then the
// row's RMSNorm into out, from the same registers.
__global__ void __launch_bounds__(kWideThreads)
    ResidualRmsNormKernel(bf16* h, int64_t h_stride, const bf16* x, int64_t x_stride, float alpha,
                          const float* w, int64_t n, bf16* out, int64_t out_stride, float eps) {
  WaitForPriorKernels();
  bf16* hr = h + blockIdx.x * h_stride;
  uint4 v[kMaxVecsPerThread];
  LoadVecs(hr, n, v);
  if (x != nullptr) {
    uint4 xv[kMaxVecsPerThread];
    LoadVecs(x + blockIdx.x * x_stride, n, xv);
    const int vecs = static_cast<int>(n / 8);
#pragma unroll
    for (int i = 0; i < kMaxVecsPerThread; ++i) {
      const int c = threadIdx.x + i * kWideThreads;
      if (c >= vecs) break;
      __nv_bfloat162* hv = reinterpret_cast<__nv_bfloat162*>(&v[i]);
      const __nv_bfloat162* xx = reinterpret_cast<const __nv_bfloat162*>(&xv[i]);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float2 a = __bfloat1622float2(hv[k]), b = __bfloat1622float2(xx[k]);
        hv[k] =
            __floats2bfloat162_rn(a.x + Round<bf16>(alpha * b.x), a.y + Round<bf16>(alpha * b.y));
      }
      reinterpret_cast<uint4*>(hr)[c] = v[i];
    }
  }
  NormalizeVecs(v, w, n, eps, out + blockIdx.x * out_stride);
}

bool VecRows(const bf16* x, const float* w, int64_t n, int64_t row_stride) {
  return n % 8 == 0 && n <= 8 * kWideThreads * kMaxVecsPerThread && row_stride % 8 == 0 &&
         reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 8 == 0;
}
template <typename T>
bool VecRows(const T*, const float*, int64_t, int64_t) {
  return false;
}

template <typename T>
cudaError_t RmsNormT(T* x, const float* w, int64_t rows, int64_t groups, int64_t n,
                     int64_t row_stride, float eps, cudaStream_t stream) {
  const int64_t items = rows * groups;
  if (items == 0) return cudaSuccess;
  if (n >= kWideFrom && items <= 0x7fffffff && VecRows(x, w, n, row_stride)) {
    return LaunchAfterPrior(RmsNormWideVecKernel, static_cast<unsigned>(items), kWideThreads, 0,
                            stream, reinterpret_cast<bf16*>(x), w, groups, n, row_stride, eps);
  } else if (n >= kWideFrom && items <= 0x7fffffff) {
    return LaunchAfterPrior(RmsNormWideKernel<T>, static_cast<unsigned>(items), kWideThreads, 0,
                            stream, x, w, groups, n, row_stride, eps);
  } else {
    return LaunchAfterPrior(RmsNormKernel<T>, CeilDiv(items, kWarps), kWarps * 32, 0, stream, x, w,
                            rows, groups, n, row_stride, eps);
  }
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

bool RmsNormSigmoidMulFuses(const bf16* x, int64_t x_stride, const float* w, int64_t n,
                            const bf16* z, int64_t z_stride) {
  return n >= kWideFrom && VecRows(x, w, n, x_stride) && VecRows(z, w, n, z_stride);
}

cudaError_t RmsNormSigmoidMul(bf16* x, int64_t x_stride, const float* w, int64_t rows, int64_t n,
                              const bf16* z, int64_t z_stride, float eps, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (rows > 0x7fffffff || !RmsNormSigmoidMulFuses(x, x_stride, w, n, z, z_stride)) {
    return cudaErrorInvalidValue;
  }
  return LaunchAfterPrior(RmsNormSigmoidMulKernel, static_cast<unsigned>(rows), kWideThreads, 0,
                          stream, x, x_stride, w, n, z, z_stride, eps);
}

bool ResidualRmsNormFuses(const bf16* h, int64_t h_stride, const bf16* x, int64_t x_stride,
                          const float* w, int64_t n, const bf16* out, int64_t out_stride) {
  return n >= kWideFrom && VecRows(h, w, n, h_stride) && VecRows(out, w, n, out_stride) &&
         (x == nullptr || VecRows(x, w, n, x_stride));
}

cudaError_t ResidualRmsNorm(bf16* h, int64_t h_stride, const bf16* x, int64_t x_stride, float alpha,
                            const float* w, int64_t rows, int64_t n, bf16* out, int64_t out_stride,
                            float eps, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (rows > 0x7fffffff || !ResidualRmsNormFuses(h, h_stride, x, x_stride, w, n, out, out_stride)) {
    return cudaErrorInvalidValue;
  }
  return LaunchAfterPrior(ResidualRmsNormKernel, static_cast<unsigned>(rows), kWideThreads, 0,
                          stream, h, h_stride, x, x_stride, alpha, w, n, out, out_stride, eps);
}

}  // namespace tome::kernels::cuda
