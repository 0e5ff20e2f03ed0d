#include "common.cuh"
#include "tome/kernels/cuda/rope.h"

namespace tome::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One thread per (token, head, pair i / i + d/2).
template <typename T>
__global__ void RopeKernel(T* x, int64_t num_tokens, int64_t heads, int64_t head_dim,
                           int64_t row_stride, int64_t first_position,
                           const float* inv_freq) {
  WaitForPriorKernels();
  const int64_t half = head_dim / 2;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
       e < num_tokens * heads * half; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e % half, h = (e / half) % heads, t = e / (half * heads);
    const float angle = static_cast<float>(first_position + t) * inv_freq[i];
    float s, c;
    sincosf(angle, &s, &c);
    T* xh = x + t * row_stride + h * head_dim;
    const float a = ToFloat(xh[i]), b = ToFloat(xh[i + half]);
    xh[i] = FromFloat<T>(a * c - b * s);
    xh[i + half] = FromFloat<T>(b * c + a * s);
  }
}

// One warp per (token, head) of bf16 rows, d = 32·kPer: the head's RMSNorm as RmsNorm computes
// it (lane l holds elements l + 32k, squares summed in that order, then the warp sum), then
// the rotation of pairs (i, i + d/2), both of which the lane holds, as RopeKernel computes it.
// Heads from `second_from` on take the weight w2 (the keys that follow the queries).
template <int kPer>
__global__ void HeadNormRopeKernel(bf16* x, const float* w, const float* w2, int64_t second_from,
                                   int64_t num_tokens, int64_t heads, int64_t row_stride, float eps,
                                   int64_t first_position, const float* inv_freq) {
  WaitForPriorKernels();
  constexpr int kD = 32 * kPer, kHalf = kD / 2;
  const int64_t item = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (item >= num_tokens * heads) return;
  const int64_t t = item / heads, head = item % heads;
  if (head >= second_from) w = w2;
  bf16* xh = x + t * row_stride + head * kD;
  float v[kPer];
  float sum_sq = 0.0f;
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    v[k] = ToFloat(xh[lane + 32 * k]);
    sum_sq += v[k] * v[k];
  }
  sum_sq = WarpSum(sum_sq);
  const float inv = 1.0f / sqrtf(sum_sq / static_cast<float>(kD) + eps);
#pragma unroll
  for (int k = 0; k < kPer; ++k) {
    v[k] = ToFloat(FromFloat<bf16>(Round<bf16>(v[k] * inv) * w[lane + 32 * k]));
  }
#pragma unroll
  for (int k = 0; k < kPer / 2; ++k) {
    const int i = lane + 32 * k;
    const float angle = static_cast<float>(first_position + t) * inv_freq[i];
    float sn, cs;
    sincosf(angle, &sn, &cs);
    const float a = v[k], b = v[k + kPer / 2];
    xh[i] = FromFloat<bf16>(a * cs - b * sn);
    xh[i + kHalf] = FromFloat<bf16>(b * cs + a * sn);
  }
}

template <typename T>
cudaError_t RopeT(T* x, int64_t num_tokens, int64_t heads, int64_t head_dim,
                  int64_t row_stride, int64_t first_position, const float* inv_freq,
                  cudaStream_t stream) {
  const int64_t n = num_tokens * heads * (head_dim / 2);
  if (n == 0) return cudaSuccess;
  return LaunchAfterPrior(RopeKernel<T>, GridFor(n, kThreads), kThreads, 0, stream, x, num_tokens,
                          heads, head_dim, row_stride, first_position, inv_freq);
}

template <int kPer>
cudaError_t LaunchHeadNormRope(bf16* x, const float* w, const float* w2, int64_t second_from,
                               int64_t num_tokens, int64_t heads, int64_t row_stride, float eps,
                               int64_t first_position, const float* inv_freq, cudaStream_t stream) {
  constexpr int kWarps = 4;
  const unsigned grid = static_cast<unsigned>(CeilDiv(num_tokens * heads, kWarps));
  return LaunchAfterPrior(HeadNormRopeKernel<kPer>, grid, 32 * kWarps, 0, stream, x, w, w2,
                          second_from, num_tokens, heads, row_stride, eps, first_position,
                          inv_freq);
}

cudaError_t HeadNormRopeOf(bf16* x, const float* w, const float* w2, int64_t second_from,
                           int64_t num_tokens, int64_t heads, int64_t head_dim, int64_t row_stride,
                           float eps, int64_t first_position, const float* inv_freq,
                           cudaStream_t stream) {
  if (num_tokens * heads == 0) return cudaSuccess;
  if (!HeadNormRopeFuses(head_dim)) return cudaErrorInvalidValue;
  return head_dim == 64 ? LaunchHeadNormRope<2>(x, w, w2, second_from, num_tokens, heads,
                                                row_stride, eps, first_position, inv_freq, stream)
                        : LaunchHeadNormRope<4>(x, w, w2, second_from, num_tokens, heads,
                                                row_stride, eps, first_position, inv_freq, stream);
}

}  // namespace

bool HeadNormRopeFuses(int64_t head_dim) { return head_dim == 64 || head_dim == 128; }

cudaError_t HeadNormRope(bf16* x, const float* w, int64_t num_tokens, int64_t num_heads,
                         int64_t head_dim, int64_t row_stride, float eps, int64_t first_position,
                         const float* inv_freq, cudaStream_t stream) {
  return HeadNormRopeOf(x, w, w, num_heads, num_tokens, num_heads, head_dim, row_stride, eps,
                        first_position, inv_freq, stream);
}

cudaError_t QkHeadNormRope(bf16* x, const float* wq, const float* wk, int64_t num_tokens,
                           int64_t num_heads, int64_t head_dim, int64_t row_stride, float eps,
                           int64_t first_position, const float* inv_freq, cudaStream_t stream) {
  return HeadNormRopeOf(x, wq, wk, num_heads, num_tokens, 2 * num_heads, head_dim, row_stride, eps,
                        first_position, inv_freq, stream);
}

cudaError_t Rope(bf16* x, int64_t num_tokens, int64_t num_heads, int64_t head_dim,
                 int64_t row_stride, int64_t first_position, const float* inv_freq,
                 cudaStream_t stream) {
  return RopeT(x, num_tokens, num_heads, head_dim, row_stride, first_position, inv_freq, stream);
}
cudaError_t Rope(float* x, int64_t num_tokens, int64_t num_heads, int64_t head_dim,
                 int64_t row_stride, int64_t first_position, const float* inv_freq,
                 cudaStream_t stream) {
  return RopeT(x, num_tokens, num_heads, head_dim, row_stride, first_position, inv_freq, stream);
}

}  // namespace tome::kernels::cuda
