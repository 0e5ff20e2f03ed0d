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

template <typename T>
cudaError_t RopeT(T* x, int64_t num_tokens, int64_t heads, int64_t head_dim,
                  int64_t row_stride, int64_t first_position, const float* inv_freq,
                  cudaStream_t stream) {
  const int64_t n = num_tokens * heads * (head_dim / 2);
  if (n == 0) return cudaSuccess;
  RopeKernel<T><<<GridFor(n, kThreads), kThreads, 0, stream>>>(
      x, num_tokens, heads, head_dim, row_stride, first_position, inv_freq);
  return cudaGetLastError();
}

}  // namespace

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
