// y = x · wᵀ for a few rows of x (decode): bandwidth-bound, so the kernel streams w once with
// 16-byte loads, one vector ahead, and keeps every row of x in registers against it; launched
// after the previous kernel (LaunchAfterPrior), its first weights load during that kernel's tail.
// A CTA takes kRowsPerCta rows of w at a time (4 unless the caller asks otherwise); its 8 warps
// split k (thread i takes 8-element vectors i, i + 256, ...), then warp shuffles and one
// shared-memory pass sum the partial products (fp32 throughout). By default the grid is what
// the GPU holds at once, each CTA an equal share of the rows. The SwiGLU form takes the MLP's
// gate and up rows of an output together and writes SiLU(gate)·up instead of both.
#include <algorithm>

#include "common.cuh"
#include "tome/kernels/cuda/small_matmul.h"

namespace tome::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// CTA b owns outputs [b·n/G, (b+1)·n/G) of a grid of G and takes them kOuts at a time: rows of
// w n0.. (kSwiGlu: gate row n0 + j and then up row n + n0 + j for output j, so that the rows
// of a last partial group are a prefix of the group's, as without).
template <int M, typename Out, int kRowsPerCta, bool kSwiGlu>
__global__ void __launch_bounds__(kThreads)
    SmallMatMulKernel(const bf16* x, int64_t ldx, const bf16* w, int64_t ldw, Out* y, int64_t ldy,
                      int64_t n, int64_t k) {
  constexpr int kRowsPerOut = kSwiGlu ? 2 : 1, kOuts = kRowsPerCta / kRowsPerOut;
  __shared__ float partial[2][kWarps][kRowsPerCta * M];  // alternate groups: one barrier each
  const int64_t end = (int64_t{blockIdx.x} + 1) * n / gridDim.x, vecs = k / 8;
  int64_t n0 = int64_t{blockIdx.x} * n / gridDim.x;
  // Row r of the group of outputs o.. .
  const auto w_row = [&](int64_t o, int r) {
    return kSwiGlu ? o + r / 2 + (r % 2 ? n : 0) : o + r;
  };
  // The weights of a thread's next vector (of this group of rows or the next) are loaded one
  // iteration ahead; the first ones before the wait for the kernel that writes x, so that they
  // stream in during its tail.
  uint4 next_w[kRowsPerCta];
  const auto load_w = [&](int64_t o, int64_t v) {
#pragma unroll
    for (int r = 0; r < kRowsPerCta; ++r) {
      if (o + r / kRowsPerOut < end && v < vecs) {
        next_w[r] = __ldg(reinterpret_cast<const uint4*>(w + w_row(o, r) * ldw) + v);
      }
    }
  };
  load_w(n0, threadIdx.x);
  WaitForPriorKernels();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int group = 0; n0 < end; n0 += kOuts, ++group) {
    const int outs = static_cast<int>(min(int64_t{kOuts}, end - n0)), rows = outs * kRowsPerOut;
    float acc[kRowsPerCta][M] = {};
    for (int64_t v = threadIdx.x; v < vecs; v += kThreads) {
      uint4 this_w[kRowsPerCta];
#pragma unroll
      for (int r = 0; r < kRowsPerCta; ++r) this_w[r] = next_w[r];
      const bool same_rows = v + kThreads < vecs;  // else the next group's first vector
      load_w(same_rows ? n0 : n0 + kOuts, same_rows ? v + kThreads : int64_t{threadIdx.x});
      float xv[M][8];
#pragma unroll
      for (int m = 0; m < M; ++m) {
        UnpackBf16x8(__ldg(reinterpret_cast<const uint4*>(x + m * ldx) + v), xv[m]);
      }
#pragma unroll
      for (int r = 0; r < kRowsPerCta; ++r) {
        if (r >= rows) break;  // (`continue` here made every product ~6% slower: ncu)
        float wv[8];
        UnpackBf16x8(this_w[r], wv);
#pragma unroll
        for (int m = 0; m < M; ++m) {
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[r][m] += wv[i] * xv[m][i];
        }
      }
    }
    float(&part)[kWarps][kRowsPerCta * M] = partial[group % 2];
#pragma unroll
    for (int r = 0; r < kRowsPerCta; ++r) {
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const float s = WarpSum(acc[r][m]);
        if (lane == 0) part[warp][r * M + m] = s;
      }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < outs * M; e += kThreads) {
      const int r = e / M, m = e % M;
      float s = 0.0f;
      if constexpr (kSwiGlu) {  // rounded as MatMul's output and SiluMul round them
        float u = 0.0f;
#pragma unroll
        for (int wi = 0; wi < kWarps; ++wi) {
          s += part[wi][2 * r * M + m];
          u += part[wi][(2 * r + 1) * M + m];
        }
        const float g = Round<Out>(s);
        s = Round<Out>(g / (1.0f + expf(-g))) * Round<Out>(u);
      } else {
#pragma unroll
        for (int wi = 0; wi < kWarps; ++wi) s += part[wi][e];
      }
      y[m * ldy + n0 + r] = FromFloat<Out>(s);
    }
  }
}

// CTAs of SmallMatMulKernel<M, Out, kRowsPerCta, kSwiGlu> one SM holds at once.
template <int M, typename Out, int kRowsPerCta, bool kSwiGlu>
int64_t ResidentCtasPerSm() {
  static const int ctas = [] {
    int n = 0;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &n, SmallMatMulKernel<M, Out, kRowsPerCta, kSwiGlu>, kThreads, 0);
    return n > 0 ? n : 1;
  }();
  return ctas;
}

// One CTA per group of outputs, or (`resident`) only as many CTAs as the GPU holds at once,
// each taking an equal share of the outputs: no last partial wave whose SMs idle while it
// drains. n is the number of outputs (kSwiGlu: w has 2n rows).
template <typename Out, int kRowsPerCta, bool kSwiGlu = false>
cudaError_t LaunchRows(const bf16* x, int64_t ldx, const bf16* w, int64_t ldw, Out* y, int64_t ldy,
                       int64_t m, int64_t n, int64_t k, bool resident, cudaStream_t stream) {
  const auto grid_for = [&](int64_t ctas_per_sm) {
    const int64_t groups = CeilDiv(n, kSwiGlu ? kRowsPerCta / 2 : kRowsPerCta);
    return static_cast<unsigned>(resident ? std::min(groups, NumSms() * ctas_per_sm) : groups);
  };
  switch (m) {
#define TOME_SMALL_MATMUL_CASE(M)                                                                  \
  case M:                                                                                          \
    return LaunchAfterPrior(SmallMatMulKernel<M, Out, kRowsPerCta, kSwiGlu>,                       \
                            grid_for(ResidentCtasPerSm<M, Out, kRowsPerCta, kSwiGlu>()), kThreads, \
                            0, stream, x, ldx, w, ldw, y, ldy, n, k);
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
                      int64_t ldy, int64_t m, int64_t n, int64_t k, bool resident,
                      cudaStream_t stream) {
  return y_fp32 ? LaunchRows<float, kRowsPerCta>(x, ldx, w, ldw, static_cast<float*>(y), ldy, m, n,
                                                 k, resident, stream)
                : LaunchRows<bf16, kRowsPerCta>(x, ldx, w, ldw, static_cast<bf16*>(y), ldy, m, n, k,
                                                resident, stream);
}

cudaError_t SmallMatMul(const bf16* x, int64_t ldx, const bf16* w, int64_t ldw, void* y,
                        bool y_fp32, int64_t ldy, int64_t m, int64_t n, int64_t k,
                        cudaStream_t stream, int rows_per_cta) {
  if (!SmallMatMulApplies(x, ldx, w, ldw, m, k)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  switch (rows_per_cta) {
    case 0:
      return LaunchOut<4>(x, ldx, w, ldw, y, y_fp32, ldy, m, n, k, true, stream);
    case 2:
      return LaunchOut<2>(x, ldx, w, ldw, y, y_fp32, ldy, m, n, k, false, stream);
    case 4:
      return LaunchOut<4>(x, ldx, w, ldw, y, y_fp32, ldy, m, n, k, false, stream);
    case 8:
      return LaunchOut<8>(x, ldx, w, ldw, y, y_fp32, ldy, m, n, k, false, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

cudaError_t SmallMatMulSiluMul(const bf16* x, int64_t ldx, const bf16* w, int64_t ldw, bf16* y,
                               int64_t ldy, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  if (!SmallMatMulApplies(x, ldx, w, ldw, m, k)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return LaunchRows<bf16, 4, true>(x, ldx, w, ldw, y, ldy, m, n, k, true, stream);
}

}  // namespace tome::kernels::cuda
