// y = x · wᵀ for a few rows of x (decode): bandwidth-bound, so the kernel streams w once with
// 16-byte loads, one vector ahead, and keeps every row of x in registers against it; launched
// after the previous kernel (LaunchAfterPrior), its first weights load during that kernel's tail. A
// CTA owns kRowsPerCta rows of w (4 unless the caller asks otherwise); its 8 warps split k (thread
// i takes 8-element vectors i, i + 256, ...), then warp shuffles and one shared-memory pass sum the
// partial products (fp32 throughout).
#include <algorithm>

#include "common.cuh"
#include "tome/kernels/cuda/small_matmul.h"

namespace tome::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
template <int M, typename Out, int kRowsPerCta>
__global__ void __launch_bounds__(kThreads)
    SmallMatMulKernel(const bf16* x, int64_t ldx, const bf16* w, int64_t ldw, Out* y, int64_t ldy,
                      int64_t n, int64_t k) {
  __shared__ float partial[kWarps][kRowsPerCta * M];
  const int64_t n0 = int64_t{blockIdx.x} * kRowsPerCta;
  const int rows = static_cast<int>(min(int64_t{kRowsPerCta}, n - n0));
  const int64_t vecs = k / 8;
  float acc[kRowsPerCta][M] = {};
  // The weights of a thread's next vector are loaded one iteration ahead; the first ones before
  // the wait for the kernel that writes x, so that they stream in during its tail.
  uint4 next_w[kRowsPerCta];
  const auto load_w = [&](int64_t v) {
#pragma unroll
    for (int r = 0; r < kRowsPerCta; ++r) {
      if (r < rows && v < vecs) {
        next_w[r] = __ldg(reinterpret_cast<const uint4*>(w + (n0 + r) * ldw) + v);
      }
    }
  };
  load_w(threadIdx.x);
  WaitForPriorKernels();
  for (int64_t v = threadIdx.x; v < vecs; v += kThreads) {
    uint4 this_w[kRowsPerCta];
#pragma unroll
    for (int r = 0; r < kRowsPerCta; ++r) this_w[r] = next_w[r];
    load_w(v + kThreads);
    float xv[M][8];
#pragma unroll
    for (int m = 0; m < M; ++m) {
      UnpackBf16x8(__ldg(reinterpret_cast<const uint4*>(x + m * ldx) + v), xv[m]);
    }
#pragma unroll
    for (int r = 0; r < kRowsPerCta; ++r) {
      if (r >= rows) break;
      float wv[8];
      UnpackBf16x8(this_w[r], wv);
#pragma unroll
      for (int m = 0; m < M; ++m) {
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[r][m] += wv[i] * xv[m][i];
      }
    }
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int r = 0; r < kRowsPerCta; ++r) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float s = WarpSum(acc[r][m]);
      if (lane == 0) partial[warp][r * M + m] = s;
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < rows * M; e += kThreads) {
    float s = 0.0f;
#pragma unroll
    for (int wi = 0; wi < kWarps; ++wi) s += partial[wi][e];
    const int r = e / M, m = e % M;
    y[m * ldy + n0 + r] = FromFloat<Out>(s);
  }
}

template <typename Out, int kRowsPerCta>
cudaError_t LaunchRows(const bf16* x, int64_t ldx, const bf16* w, int64_t ldw, Out* y, int64_t ldy,
                       int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>(CeilDiv(n, kRowsPerCta));
  switch (m) {
#define TOME_SMALL_MATMUL_CASE(M)                                                                 \
  case M:                                                                                         \
    return LaunchAfterPrior(SmallMatMulKernel<M, Out, kRowsPerCta>, grid, kThreads, 0, stream, x, \
                            ldx, w, ldw, y, ldy, n, k);
    TOME_SMALL_MATMUL_CASE(1)
    TOME_SMALL_MATMUL_CASE(2)
    TOME_SMALL_MATMUL_CASE(3)
    TOME_SMALL_MATMUL_CASE(4)
    TOME_SMALL_MATMUL_CASE(5)
    TOME_SMALL_MATMUL_CASE(6)
    TOME_SMALL_MATMUL_CASE(7)
    TOME_SMALL_MATMUL_CASE(8)
#undef TOME_SMALL_MATMUL_CASE
    default:
      return cudaErrorInvalidValue;
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool SmallMatMulApplies(const void* x, int64_t ldx, const void* w, int64_t ldw, int64_t m,
                        int64_t k) {
  return m >= 1 && m <= kSmallMatMulMaxRows && k % 8 == 0 && ldx % 8 == 0 && ldw % 8 == 0 &&
         Aligned16(x) && Aligned16(w);
}

template <int kRowsPerCta>
cudaError_t LaunchOut(const bf16* x, int64_t ldx, const bf16* w, int64_t ldw, void* y, bool y_fp32,
                      int64_t ldy, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  return y_fp32 ? LaunchRows<float, kRowsPerCta>(x, ldx, w, ldw, static_cast<float*>(y), ldy, m, n,
                                                 k, stream)
                : LaunchRows<bf16, kRowsPerCta>(x, ldx, w, ldw, static_cast<bf16*>(y), ldy, m, n, k,
                                                stream);
}

cudaError_t SmallMatMul(const bf16* x, int64_t ldx, const bf16* w, int64_t ldw, void* y,
                        bool y_fp32, int64_t ldy, int64_t m, int64_t n, int64_t k,
                        cudaStream_t stream, int rows_per_cta) {
  if (!SmallMatMulApplies(x, ldx, w, ldw, m, k)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  switch (rows_per_cta) {
    case 2:
      return LaunchOut<2>(x, ldx, w, ldw, y, y_fp32, ldy, m, n, k, stream);
    case 0:
    case 4:
      return LaunchOut<4>(x, ldx, w, ldw, y, y_fp32, ldy, m, n, k, stream);
    case 8:
      return LaunchOut<8>(x, ldx, w, ldw, y, y_fp32, ldy, m, n, k, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace tome::kernels::cuda
