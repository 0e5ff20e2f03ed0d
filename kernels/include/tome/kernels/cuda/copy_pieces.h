// Many small copies in one launch: the block cache uploads fetched KV blocks (two 16 KiB
// pieces each) from one pinned staging buffer instead of a driver copy call per piece, and
// page tables take just their changed entries.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace tome::kernels::cuda {

struct PieceCopy {
  void* dst;        // device memory
  const void* src;  // memory the device can read (device, or mapped pinned host memory)
  int64_t bytes;
};

// Copies every piece; `pieces` itself must be readable by the device. Pieces must not
// overlap. 16-byte vectors where a piece's addresses and size allow, bytes otherwise.
cudaError_t CopyPieces(const PieceCopy* pieces, int64_t num_pieces, cudaStream_t stream);

// table[entries[i].index] = entries[i].pointer for every i (`entries` in device memory):
// the few page-table entries a decode step changes in a long document's view.
struct TableEntry {
  int64_t index;
  const void* pointer;
};
cudaError_t SetTableEntries(const void** table, const TableEntry* entries, int64_t num_entries,
                            cudaStream_t stream);

}  // namespace tome::kernels::cuda
