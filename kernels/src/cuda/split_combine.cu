#include "common.cuh"
#include "split_combine.h"

namespace tome::kernels::cuda {
namespace {

// out = Σ_s o_s e^(m_s − M) / Σ_s l_s e^(m_s − M) over the splits of each (token, head) row.
// The splits' maxima and normalisers are loaded at once into shared memory and their
// partial outputs eight at a time: a decode step's 64 splits read one after another took
// 32 us on the H200, longer than the attention kernel itself.
__global__ void CombineKernel(const float* part_o, const float* part_ml, int splits, int64_t rows,
                              int64_t head_dim, int64_t num_q_heads, bf16* out,
                              int64_t out_stride) {
  WaitForPriorKernels();
  __shared__ float split_m[kMaxSplits], split_l[kMaxSplits], split_w[kMaxSplits];
  __shared__ float total_l;
  const int64_t row = blockIdx.x;  // token · Hq + head
  for (int s = threadIdx.x; s < splits; s += blockDim.x) {
    split_m[s] = part_ml[2 * (s * rows + row)];
    split_l[s] = part_ml[2 * (s * rows + row) + 1];
  }
  __syncthreads();
  float m = -INFINITY;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, split_m[s]);
  if (threadIdx.x == 0) {
    float l = 0.0f;
    for (int s = 0; s < splits; ++s) {
      if (split_m[s] != -INFINITY) l += split_l[s] * expf(split_m[s] - m);
    }
    total_l = l;
  }
  __syncthreads();
  for (int s = threadIdx.x; s < splits; s += blockDim.x) {
    split_w[s] = split_m[s] != -INFINITY ? expf(split_m[s] - m) : 0.0f;
  }
  __syncthreads();
  const float l = total_l;
  bf16* dst = out + (row / num_q_heads) * out_stride + (row % num_q_heads) * head_dim;
  for (int64_t c = threadIdx.x; c < head_dim; c += blockDim.x) {
    float acc = 0.0f;
    // Unconditional loads (a split that attended nothing wrote zeros and has weight 0): a
    // load under a condition read from shared memory was issued one at a time.
#pragma unroll 8
    for (int s = 0; s < splits; ++s) acc += part_o[(s * rows + row) * head_dim + c] * split_w[s];
    dst[c] = FromFloat<bf16>(acc / l);
  }
}

}  // namespace

cudaError_t CombineSplits(const float* part_o, const float* part_ml, int splits, int64_t rows,
                          int64_t head_dim, int64_t num_q_heads, bf16* out, int64_t out_stride,
                          cudaStream_t stream) {
  if (splits < 1 || splits > kMaxSplits || head_dim < 1 || head_dim > 1024) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  return LaunchAfterPrior(CombineKernel, static_cast<unsigned>(rows),
                          static_cast<unsigned>(head_dim), 0, stream, part_o, part_ml, splits, rows,
                          head_dim, num_q_heads, out, out_stride);
}

}  // namespace tome::kernels::cuda
