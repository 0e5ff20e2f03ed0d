// Lightning for one token (a decode step). The chunked kernel (lightning.cu) stages a 64-token
// chunk's tiles (108 KiB of shared memory at d 128) and forms a 64 × 64 score matrix for one
// token; here a CTA per (head, slice of 32 value columns) reads its slice of the fp32 state
// once, straight into registers, and writes it back updated: each warp holds a band of d/8
// state rows, lane c the slice's column c. qᵀS is summed per band, then over the bands.
#include "common.cuh"
#include "lightning_decode.h"

namespace tome::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

template <int D>
constexpr int kSlice = D < 32 ? D : 32;  // value columns a CTA

template <int D>
__global__ void __launch_bounds__(kThreads)
    LightningDecodeKernel(const bf16* q, const bf16* k, const bf16* v, const float* slopes,
                          float scale, float* state, bf16* out) {
  constexpr int kRows = D / kWarps;  // state rows a warp
  __shared__ float band_sums[kWarps][32];
  __shared__ float band_dots[kWarps];
  const int h = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int col = blockIdx.y * kSlice<D> + lane, row0 = warp * kRows;
  const bool active = lane < kSlice<D>;
  // Slopes are weights (no kernel writes them): read before the wait.
  const float gamma = static_cast<float>(exp(-static_cast<double>(slopes[h])));
  WaitForPriorKernels();
  const bf16 *qh = q + int64_t{h} * D, *kh = k + int64_t{h} * D;
  float* s = state + (int64_t{h} * D + row0) * D + col;
  float sv[kRows];
#pragma unroll
  for (int i = 0; i < kRows; ++i) sv[i] = active ? s[i * D] : 0.0f;
  const float vc = active ? ToFloat(v[int64_t{h} * D + col]) : 0.0f;
  float inter = 0.0f, dot = 0.0f;
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    const float qr = ToFloat(qh[row0 + i]), kr = ToFloat(kh[row0 + i]);
    inter += qr * sv[i];
    dot += qr * kr;
    if (active) s[i * D] = gamma * sv[i] + kr * vc;
  }
  band_sums[warp][lane] = inter;
  if (lane == 0) band_dots[warp] = dot;
  __syncthreads();
  if (warp == 0 && active) {
    float total = 0.0f, qk = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      total += band_sums[w][lane];
      qk += band_dots[w];
    }
    out[int64_t{h} * D + col] = FromFloat<bf16>(scale * gamma * total + (scale * qk) * vc);
  }
}

template <int D>
cudaError_t Launch(const bf16* q, const bf16* k, const bf16* v, int64_t num_heads,
                   const float* slopes, float scale, float* state, bf16* out, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(num_heads), D / kSlice<D>);
  return LaunchAfterPrior(LightningDecodeKernel<D>, grid, kThreads, 0, stream, q, k, v, slopes,
                          scale, state, out);
}

}  // namespace

cudaError_t LightningDecode(const bf16* q, const bf16* k, const bf16* v, int64_t num_heads,
                            int64_t head_dim, const float* slopes, float scale, float* state,
                            bf16* out, cudaStream_t stream) {
  if (num_heads == 0) return cudaSuccess;
  switch (head_dim) {
    case 16:
      return Launch<16>(q, k, v, num_heads, slopes, scale, state, out, stream);
    case 32:
      return Launch<32>(q, k, v, num_heads, slopes, scale, state, out, stream);
    case 64:
      return Launch<64>(q, k, v, num_heads, slopes, scale, state, out, stream);
    case 128:
      return Launch<128>(q, k, v, num_heads, slopes, scale, state, out, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace tome::kernels::cuda
