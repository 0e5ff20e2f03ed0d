// Helpers shared by the CUDA kernels (internal).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>

#include "tome/kernels/cuda/types.h"

namespace tome::kernels::cuda {

// The most dynamic shared memory `Kernel` may use on the current device (the device's opt-in
// limit less the kernel's static shared memory), after raising the kernel's limit to it; -1
// if CUDA refuses. Function attributes belong to the device that is current when they are
// set, so with several GPUs in one process (tensor parallelism) this must run once per
// device: a once-per-process setting leaves the second GPU at the 48 KiB default, and its
// launches fail.
template <auto Kernel>
int OptInDynamicSmem() {
  constexpr int kMaxDevices = 64;
  static std::once_flag once[kMaxDevices];
  static int limit[kMaxDevices];
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) return -1;
  std::call_once(once[device], [device] {
    int optin = 0;
    cudaFuncAttributes attr{};
    limit[device] = -1;
    if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
            cudaSuccess ||
        cudaFuncGetAttributes(&attr, Kernel) != cudaSuccess) {
      return;
    }
    const int dynamic = optin - static_cast<int>(attr.sharedSizeBytes);
    if (cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, dynamic) ==
        cudaSuccess) {
      limit[device] = dynamic;
    }
  });
  return limit[device];
}

// Programmatic dependent launch (Hopper). A kernel started with LaunchAfterPrior may begin
// while the kernel before it in the stream is still finishing: its CTAs fill the SMs that the
// earlier grid's tail leaves idle, and the launch gap disappears. Such a kernel must call
// WaitForPriorKernels() before it reads anything earlier kernels write or writes anything they
// read; only work on inputs no kernel writes (weights) may come before. The wait also lets the
// next kernel launch, so at most one grid waits ahead. TOME_CUDA_PDL=0 turns the overlap off
// (plain stream order), for comparison.
__device__ __forceinline__ void WaitForPriorKernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

inline bool DependentLaunchEnabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("TOME_CUDA_PDL");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return enabled;
}

template <typename... Params, typename... Args>
cudaError_t LaunchAfterPrior(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                             cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute overlap{};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = DependentLaunchEnabled() ? 1 : 0;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = &overlap;
  config.numAttrs = 1;
  cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  return cudaGetLastError();
}

__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(bf16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 FromFloat<bf16>(float x) { return __float2bfloat16_rn(x); }

// x rounded through T: the bf16 store of an intermediate PyTorch result (identity for float).
template <typename T>
__device__ __forceinline__ float Round(float x) { return ToFloat(FromFloat<T>(x)); }

// 8 bf16 (one 16-byte vector) as floats: bf16 is the high half of an fp32.
__device__ __forceinline__ void UnpackBf16x8(const uint4& v, float (&f)[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Exclusive prefix sum of `count` over the block in thread order; *total = block sum. Every
// thread of the block must call it.
__device__ inline int BlockExclusiveSum(int count, int* total, int* warp_sums) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int inclusive = count;
  for (int off = 1; off < 32; off <<= 1) {
    const int v = __shfl_up_sync(0xffffffffu, inclusive, off);
    if (lane >= off) inclusive += v;
  }
  if (lane == 31) warp_sums[warp] = inclusive;
  __syncthreads();
  int before = 0, all = 0;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) {
    const int c = warp_sums[w];
    before += w < warp ? c : 0;
    all += c;
  }
  __syncthreads();  // warp_sums is reused by the next call
  *total = all;
  return before + inclusive - count;
}

// Row `i` of a paged matrix (PagedRows::row, which is host-only).
__device__ __forceinline__ const bf16* PagedRow(const DevicePagedRows& m, int64_t i) {
  return m.pages[i / m.rows_per_page] + (i % m.rows_per_page) * m.width;
}

// Per-group paged views passed by value in a launch.
struct PagedGroups {
  DevicePagedRows g[kMaxGroups];
};

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Streaming multiprocessors of the first device asked (every GPU of a tensor-parallel
// group is the same model).
inline int NumSms() {
  static const int sms = [] {
    int device = 0, n = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device);
    return n > 0 ? n : 132;
  }();
  return sms;
}

// Grid size for a grid-stride loop over n items.
inline unsigned GridFor(int64_t n, int threads) {
  const int64_t blocks = CeilDiv(n, threads);
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

}  // namespace tome::kernels::cuda
