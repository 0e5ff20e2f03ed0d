#include <algorithm>
#include <initializer_list>
#include <utility>

#include "common.cuh"
#include "tome/kernels/cuda/elementwise.h"
#include "tome/kernels/random.h"

namespace tome::kernels::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void EmbeddingKernel(const T* table, const int32_t* ids, int64_t n, int64_t dim,
                                float scale, T* out, int64_t out_stride) {
  WaitForPriorKernels();
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * dim;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = e / dim, c = e % dim;
    out[t * out_stride + c] = FromFloat<T>(scale * ToFloat(table[int64_t(ids[t]) * dim + c]));
  }
}

template <typename T>
__global__ void SiluMulKernel(const T* gate, const T* up, int64_t in_stride, T* out,
                              int64_t out_stride, int64_t rows, int64_t cols) {
  WaitForPriorKernels();
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < rows * cols;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / cols, c = e % cols;
    const float g = ToFloat(gate[r * in_stride + c]);
    const float s = Round<T>(g / (1.0f + expf(-g)));
    out[r * out_stride + c] = FromFloat<T>(s * ToFloat(up[r * in_stride + c]));
  }
}

template <typename T>
__global__ void SigmoidMulKernel(T* x, int64_t x_stride, const T* z, int64_t z_stride,
                                 int64_t rows, int64_t cols) {
  WaitForPriorKernels();
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < rows * cols;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / cols, c = e % cols;
    const float s = Round<T>(1.0f / (1.0f + expf(-ToFloat(z[r * z_stride + c]))));
    T& xe = x[r * x_stride + c];
    xe = FromFloat<T>(ToFloat(xe) * s);
  }
}

template <typename T>
__global__ void AddScaledKernel(T* h, int64_t h_stride, const T* x, int64_t x_stride,
                                float alpha, int64_t rows, int64_t cols) {
  WaitForPriorKernels();
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < rows * cols;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / cols, c = e % cols;
    T& he = h[r * h_stride + c];
    he = FromFloat<T>(ToFloat(he) + Round<T>(alpha * ToFloat(x[r * x_stride + c])));
  }
}

// --- bf16 rows in 16-byte vectors (8 elements a thread; the engine's activations qualify) ---

__device__ __forceinline__ void Load8(const bf16* p, float (&f)[8]) {
  UnpackBf16x8(*reinterpret_cast<const uint4*>(p), f);
}
__device__ __forceinline__ void Store8(bf16* p, const float (&f)[8]) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    w[i] = *reinterpret_cast<const uint32_t*>(&v);
  }
  *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}

// The same per-element math as the scalar kernels above, 8 elements at a time.
struct SiluMulVec {
  const bf16 *gate, *up;
  int64_t in_stride;
  bf16* out;
  int64_t out_stride;
  __device__ void operator()(int64_t r, int64_t c) const {
    float g[8], u[8], o[8];
    Load8(gate + r * in_stride + c, g);
    Load8(up + r * in_stride + c, u);
#pragma unroll
    for (int i = 0; i < 8; ++i) o[i] = Round<bf16>(g[i] / (1.0f + expf(-g[i]))) * u[i];
    Store8(out + r * out_stride + c, o);
  }
};
struct SigmoidMulVec {
  bf16* x;
  int64_t x_stride;
  const bf16* z;
  int64_t z_stride;
  __device__ void operator()(int64_t r, int64_t c) const {
    float xv[8], zv[8];
    Load8(x + r * x_stride + c, xv);
    Load8(z + r * z_stride + c, zv);
#pragma unroll
    for (int i = 0; i < 8; ++i) xv[i] *= Round<bf16>(1.0f / (1.0f + expf(-zv[i])));
    Store8(x + r * x_stride + c, xv);
  }
};
struct AddScaledVec {
  bf16* h;
  int64_t h_stride;
  const bf16* x;
  int64_t x_stride;
  float alpha;
  __device__ void operator()(int64_t r, int64_t c) const {
    float hv[8], xv[8];
    Load8(h + r * h_stride + c, hv);
    Load8(x + r * x_stride + c, xv);
#pragma unroll
    for (int i = 0; i < 8; ++i) hv[i] += Round<bf16>(alpha * xv[i]);
    Store8(h + r * h_stride + c, hv);
  }
};

template <typename Op>
__global__ void Vec8Kernel(int64_t rows, int64_t vecs_per_row, Op op) {
  WaitForPriorKernels();
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < vecs_per_row;
         v += int64_t(gridDim.x) * blockDim.x) {
      op(r, 8 * v);
    }
  }
}

// Whether rows of `cols` bf16 at these pointers and strides can be read 16 bytes at a time.
bool Vec8(int64_t cols, std::initializer_list<std::pair<const void*, int64_t>> rows) {
  if (cols % 8 != 0) return false;
  for (const auto& [p, stride] : rows) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0 || stride % 8 != 0) return false;
  }
  return true;
}

template <typename Op>
cudaError_t LaunchVec8(int64_t rows, int64_t cols, const Op& op, cudaStream_t stream) {
  if (rows * cols == 0) return cudaSuccess;
  const int64_t vecs = cols / 8;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(CeilDiv(vecs, kThreads), 1024)),
                  static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
  return LaunchAfterPrior(Vec8Kernel<Op>, grid, kThreads, 0, stream, rows, vecs, op);
}

template <typename E>
__global__ void FillKernel(E* dst, int64_t stride, int64_t rows, int64_t cols, E value) {
  WaitForPriorKernels();
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < rows * cols;
       e += int64_t(gridDim.x) * blockDim.x) {
    dst[(e / cols) * stride + e % cols] = value;
  }
}

template <typename S, typename D>
__global__ void ConvertKernel(const S* src, int64_t src_stride, D* dst, int64_t dst_stride,
                              int64_t rows, int64_t cols) {
  WaitForPriorKernels();
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < rows * cols;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / cols, c = e % cols;
    dst[r * dst_stride + c] = FromFloat<D>(ToFloat(src[r * src_stride + c]));
  }
}

template <typename T>
__global__ void RandomKernel(T* dst, int64_t stride, int64_t rows, int64_t cols, uint64_t seed,
                             float mean, float stddev) {
  WaitForPriorKernels();
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < rows * cols;
       e += int64_t(gridDim.x) * blockDim.x) {
    dst[(e / cols) * stride + e % cols] =
        FromFloat<T>(mean + stddev * HashedNormal(seed, static_cast<uint64_t>(e)));
  }
}

template <typename T>
cudaError_t EmbeddingT(const T* table, const int32_t* ids, int64_t n, int64_t dim, float scale,
                       T* out, int64_t out_stride, cudaStream_t stream) {
  if (n * dim == 0) return cudaSuccess;
  return LaunchAfterPrior(EmbeddingKernel<T>, GridFor(n * dim, kThreads), kThreads, 0, stream,
                          table, ids, n, dim, scale, out, out_stride);
}

}  // namespace

cudaError_t Embedding(const bf16* table, const int32_t* ids, int64_t n, int64_t dim, float scale,
                      bf16* out, int64_t out_stride, cudaStream_t stream) {
  return EmbeddingT(table, ids, n, dim, scale, out, out_stride, stream);
}
cudaError_t Embedding(const float* table, const int32_t* ids, int64_t n, int64_t dim,
                      float scale, float* out, int64_t out_stride, cudaStream_t stream) {
  return EmbeddingT(table, ids, n, dim, scale, out, out_stride, stream);
}

#define TOME_ELEMENTWISE_LAUNCH(kernel, n, ...)                                                \
  do {                                                                                         \
    if ((n) == 0) return cudaSuccess;                                                          \
    return LaunchAfterPrior(kernel, GridFor((n), kThreads), kThreads, 0, stream, __VA_ARGS__); \
  } while (0)

cudaError_t SiluMul(const bf16* gate, const bf16* up, int64_t in_stride, bf16* out,
                    int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (Vec8(cols, {{gate, in_stride}, {up, in_stride}, {out, out_stride}})) {
    return LaunchVec8(rows, cols, SiluMulVec{gate, up, in_stride, out, out_stride}, stream);
  }
  TOME_ELEMENTWISE_LAUNCH(SiluMulKernel<bf16>, rows * cols, gate, up, in_stride, out,
                          out_stride, rows, cols);
}
cudaError_t SiluMul(const float* gate, const float* up, int64_t in_stride, float* out,
                    int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream) {
  TOME_ELEMENTWISE_LAUNCH(SiluMulKernel<float>, rows * cols, gate, up, in_stride, out,
                          out_stride, rows, cols);
}
cudaError_t SigmoidMul(bf16* x, int64_t x_stride, const bf16* z, int64_t z_stride, int64_t rows,
                       int64_t cols, cudaStream_t stream) {
  if (Vec8(cols, {{x, x_stride}, {z, z_stride}})) {
    return LaunchVec8(rows, cols, SigmoidMulVec{x, x_stride, z, z_stride}, stream);
  }
  TOME_ELEMENTWISE_LAUNCH(SigmoidMulKernel<bf16>, rows * cols, x, x_stride, z, z_stride, rows,
                          cols);
}
cudaError_t SigmoidMul(float* x, int64_t x_stride, const float* z, int64_t z_stride,
                       int64_t rows, int64_t cols, cudaStream_t stream) {
  TOME_ELEMENTWISE_LAUNCH(SigmoidMulKernel<float>, rows * cols, x, x_stride, z, z_stride, rows,
                          cols);
}
cudaError_t AddScaled(bf16* h, int64_t h_stride, const bf16* x, int64_t x_stride, float alpha,
                      int64_t rows, int64_t cols, cudaStream_t stream) {
  if (Vec8(cols, {{h, h_stride}, {x, x_stride}})) {
    return LaunchVec8(rows, cols, AddScaledVec{h, h_stride, x, x_stride, alpha}, stream);
  }
  TOME_ELEMENTWISE_LAUNCH(AddScaledKernel<bf16>, rows * cols, h, h_stride, x, x_stride, alpha,
                          rows, cols);
}
cudaError_t AddScaled(float* h, int64_t h_stride, const float* x, int64_t x_stride, float alpha,
                      int64_t rows, int64_t cols, cudaStream_t stream) {
  TOME_ELEMENTWISE_LAUNCH(AddScaledKernel<float>, rows * cols, h, h_stride, x, x_stride, alpha,
                          rows, cols);
}

cudaError_t FillPattern(void* dst, int elem_bytes, int64_t stride, int64_t rows, int64_t cols,
                        uint32_t pattern, cudaStream_t stream) {
  if (elem_bytes == 2) {
    TOME_ELEMENTWISE_LAUNCH(FillKernel<uint16_t>, rows * cols, static_cast<uint16_t*>(dst),
                            stride, rows, cols, static_cast<uint16_t>(pattern));
  }
  if (elem_bytes == 4) {
    TOME_ELEMENTWISE_LAUNCH(FillKernel<uint32_t>, rows * cols, static_cast<uint32_t*>(dst),
                            stride, rows, cols, pattern);
  }
  return cudaErrorInvalidValue;
}

cudaError_t Convert(const float* src, int64_t src_stride, bf16* dst, int64_t dst_stride,
                    int64_t rows, int64_t cols, cudaStream_t stream) {
  TOME_ELEMENTWISE_LAUNCH((ConvertKernel<float, bf16>), rows * cols, src, src_stride, dst,
                          dst_stride, rows, cols);
}
cudaError_t Convert(const bf16* src, int64_t src_stride, float* dst, int64_t dst_stride,
                    int64_t rows, int64_t cols, cudaStream_t stream) {
  TOME_ELEMENTWISE_LAUNCH((ConvertKernel<bf16, float>), rows * cols, src, src_stride, dst,
                          dst_stride, rows, cols);
}

cudaError_t FillRandomNormal(bf16* dst, int64_t stride, int64_t rows, int64_t cols,
                             uint64_t seed, float mean, float stddev, cudaStream_t stream) {
  TOME_ELEMENTWISE_LAUNCH(RandomKernel<bf16>, rows * cols, dst, stride, rows, cols, seed, mean,
                          stddev);
}
cudaError_t FillRandomNormal(float* dst, int64_t stride, int64_t rows, int64_t cols,
                             uint64_t seed, float mean, float stddev, cudaStream_t stream) {
  TOME_ELEMENTWISE_LAUNCH(RandomKernel<float>, rows * cols, dst, stride, rows, cols, seed, mean,
                          stddev);
}

}  // namespace tome::kernels::cuda
