#include "tome/kernels/cuda/spin.h"

namespace tome::kernels::cuda {
namespace {

__global__ void SpinKernel(int64_t nanoseconds) {
  uint64_t start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (static_cast<int64_t>(now - start) < nanoseconds);
}

}  // namespace

cudaError_t Spin(int64_t microseconds, cudaStream_t stream) {
  SpinKernel<<<1, 1, 0, stream>>>(microseconds * 1000);
  return cudaGetLastError();
}

}  // namespace tome::kernels::cuda
