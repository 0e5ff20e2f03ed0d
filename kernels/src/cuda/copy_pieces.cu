// CopyPieces (one CTA per piece) and SetTableEntries.
#include "common.cuh"
#include "tome/kernels/cuda/copy_pieces.h"

namespace tome::kernels::cuda {
namespace {

__global__ void CopyPiecesKernel(const PieceCopy* pieces) {
  WaitForPriorKernels();
  const PieceCopy p = pieces[blockIdx.x];
  const uintptr_t bits = reinterpret_cast<uintptr_t>(p.dst) | reinterpret_cast<uintptr_t>(p.src) |
                         static_cast<uintptr_t>(p.bytes);
  const bool vectors = bits % 16 == 0;
  if (vectors) {
    uint4* dst = static_cast<uint4*>(p.dst);
    const uint4* src = static_cast<const uint4*>(p.src);
    for (int64_t i = threadIdx.x; i < p.bytes / 16; i += blockDim.x) dst[i] = src[i];
  } else {
    char* dst = static_cast<char*>(p.dst);
    const char* src = static_cast<const char*>(p.src);
    for (int64_t i = threadIdx.x; i < p.bytes; i += blockDim.x) dst[i] = src[i];
  }
}

__global__ void SetTableEntriesKernel(const void** table, const TableEntry* entries, int64_t n) {
  WaitForPriorKernels();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    table[entries[i].index] = entries[i].pointer;
  }
}

}  // namespace

cudaError_t SetTableEntries(const void** table, const TableEntry* entries, int64_t num_entries,
                            cudaStream_t stream) {
  if (num_entries <= 0) return cudaSuccess;
  return LaunchAfterPrior(SetTableEntriesKernel, GridFor(num_entries, 256), 256, 0, stream, table,
                          entries, num_entries);
}

cudaError_t CopyPieces(const PieceCopy* pieces, int64_t num_pieces, cudaStream_t stream) {
  if (num_pieces <= 0) return cudaSuccess;
  if (num_pieces > INT32_MAX) return cudaErrorInvalidValue;  // one CTA a piece
  return LaunchAfterPrior(CopyPiecesKernel, static_cast<unsigned>(num_pieces), 256, 0, stream,
                          pieces);
}

}  // namespace tome::kernels::cuda
